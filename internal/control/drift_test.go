package control

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"weft/internal/store"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// nodeFieldCarry says, for every field of wire.Node, how a change to it
// reaches the nodes that see it: "patch" fields travel in a PeerPatch
// (wire.PeerPatch, peerPatch) and are ignored by sameRecord; "record"
// fields make the whole record go out again. When wire.Node gains a
// field, TestWireNodeDrift fails until the field is added here, which is
// the moment to check every place a node record is copied or compared:
// the delta and patch (peerPatch, wire.PeerPatch, NetMap.Apply in
// controlclient), the mapper's equality check (sameRecord), the node's
// netmap, and the store (store.Node.Wire, its columns, runtimeOf).
var nodeFieldCarry = map[string]string{
	"ID":         "record",
	"Name":       "record",
	"User":       "record",
	"Tags":       "record",
	"MachineKey": "record",
	"NodeKey":    "record",
	"KeyExpiry":  "record",
	"DiscoKey":   "patch",
	"Addresses":  "record",
	"AllowedIPs": "record",
	"Endpoints":  "patch",
	"HomeRegion": "patch",
	"Online":     "patch",
	"LastSeen":   "patch",
	"OS":         "record",
	"Hostinfo":   "patch",
	"Routes":     "record",
}

func TestWireNodeDrift(t *testing.T) {
	fields := tstest.FieldNames[wire.Node]()
	for _, f := range fields {
		if _, ok := nodeFieldCarry[f]; !ok {
			t.Errorf("wire.Node has a new field %s: decide whether a PeerPatch carries it, carry it through "+
				"peerPatch, sameRecord, controlclient's NetMap.Apply and store.Node.Wire (and a column), "+
				"then add it to nodeFieldCarry", f)
		}
	}
	for f := range nodeFieldCarry {
		if !slices.Contains(fields, f) {
			t.Errorf("nodeFieldCarry names %s, which wire.Node no longer has", f)
		}
	}

	t.Run("sameRecord", func(t *testing.T) {
		for _, f := range fields {
			var a, b wire.Node
			tstest.FillField(&b, f)
			if got, want := sameRecord(&a, &b), nodeFieldCarry[f] == "patch"; got != want {
				t.Errorf("sameRecord with only %s changed = %v, want %v (a %q field)", f, got, want, nodeFieldCarry[f])
			}
		}
	})

	t.Run("peerPatch", func(t *testing.T) {
		var n wire.Node
		tstest.Fill(&n)
		pp := peerPatch(n.ID, &n, chOnline|chRuntime|chHostinfo)
		pv, nv := reflect.ValueOf(pp).Elem(), reflect.ValueOf(n)
		var carried []string
		for i := range pv.NumField() {
			name := pv.Type().Field(i).Name
			if name == "ID" {
				continue
			}
			carried = append(carried, name)
			if nodeFieldCarry[name] != "patch" {
				t.Errorf("PeerPatch.%s carries a field nodeFieldCarry calls %q", name, nodeFieldCarry[name])
				continue
			}
			// A patch field points at the node's value; a field that is
			// a pointer in the node already (Hostinfo) is carried as is.
			got := pv.Field(i)
			if pv.Field(i).IsNil() {
				t.Errorf("peerPatch leaves %s out", name)
				continue
			}
			if nv.FieldByName(name).Kind() != reflect.Pointer {
				got = got.Elem()
			}
			if !reflect.DeepEqual(got.Interface(), nv.FieldByName(name).Interface()) {
				t.Errorf("peerPatch's %s = %v, want the node's %v", name, got, nv.FieldByName(name))
			}
		}
		for f, how := range nodeFieldCarry {
			if how == "patch" && !slices.Contains(carried, f) {
				t.Errorf("%s is a patch field but wire.PeerPatch has no %s", f, f)
			}
		}
	})

	t.Run("record JSON", func(t *testing.T) {
		// Full records go to nodes as the JSON mapper.encoded makes.
		var n, back wire.Node
		tstest.Fill(&n)
		if err := json.Unmarshal(mustJSON(&n), &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(n, back) {
			t.Errorf("a record does not survive its JSON:\n got %+v\nwant %+v", back, n)
		}
	})

	t.Run("runtimeOf", func(t *testing.T) {
		// Every runtime fact the store keeps comes from the node's
		// record of the same name.
		var n wire.Node
		tstest.Fill(&n)
		rt := runtimeOf(&n)
		if z := tstest.ZeroFields(&rt); len(z) > 0 {
			t.Errorf("runtimeOf leaves store.NodeRuntime's %v unset", z)
		}
		rv, nv := reflect.ValueOf(rt), reflect.ValueOf(n)
		for _, f := range tstest.FieldNames[store.NodeRuntime]() {
			if !nv.FieldByName(f).IsValid() {
				t.Errorf("store.NodeRuntime.%s has no wire.Node field of that name", f)
			} else if !reflect.DeepEqual(rv.FieldByName(f).Interface(), nv.FieldByName(f).Interface()) {
				t.Errorf("runtimeOf's %s differs from the node's", f)
			}
		}
	})
}

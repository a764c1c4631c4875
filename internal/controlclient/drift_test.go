package controlclient

import (
	"reflect"
	"testing"

	"weft/internal/tstest"
	"weft/internal/wire"
)

// TestNetMapCarriesEveryNodeField is the node side's drift guard for
// wire.Node (see control's TestWireNodeDrift for the server side): a
// full record in a delta reaches the netmap whole, a clone keeps it, and
// every field a PeerPatch carries is applied.
func TestNetMapCarriesEveryNodeField(t *testing.T) {
	var peer wire.Node
	tstest.Fill(&peer)
	nm := &NetMap{}
	nm.Apply(&wire.MapResponse{Full: true})
	nm.Apply(&wire.MapResponse{PeersChanged: []*wire.Node{&peer}})
	if got := nm.Clone().Peers[peer.ID]; got == nil || !reflect.DeepEqual(*got, peer) {
		t.Fatalf("netmap peer after a delta and Clone = %+v, want %+v", got, peer)
	}

	var pp wire.PeerPatch
	tstest.Fill(&pp)
	nm = &NetMap{}
	nm.Apply(&wire.MapResponse{Full: true, Peers: []*wire.Node{{ID: pp.ID}}})
	nm.Apply(&wire.MapResponse{PeersPatched: []*wire.PeerPatch{&pp}})
	got := reflect.ValueOf(*nm.Peers[pp.ID])
	pv := reflect.ValueOf(pp)
	for i := range pv.NumField() {
		name := pv.Type().Field(i).Name
		if name == "ID" {
			continue
		}
		f := got.FieldByName(name)
		if !f.IsValid() {
			t.Errorf("PeerPatch.%s names no wire.Node field", name)
			continue
		}
		want := pv.Field(i)
		if f.Kind() != reflect.Pointer {
			want = want.Elem() // a patch points at the value it sets
		}
		if !reflect.DeepEqual(f.Interface(), want.Interface()) {
			t.Errorf("NetMap.Apply does not apply PeerPatch.%s", name)
		}
	}
}

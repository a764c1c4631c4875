package store

import (
	"context"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"weft/internal/tstest"
)

// TestWireCarriesEveryNodeField is the store's drift guard for wire.Node
// (see control's TestWireNodeDrift): every field of the record nodes see
// is filled from a store.Node, except Online, which the control server
// sets.
func TestWireCarriesEveryNodeField(t *testing.T) {
	var n Node
	tstest.Fill(&n)
	// Only approved routes that are still advertised are in effect.
	n.AdvertisedRoutes = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	n.ApprovedRoutes = n.AdvertisedRoutes
	w := n.Wire()
	if z := tstest.ZeroFields(&w); !slices.Equal(z, []string{"Online"}) {
		t.Errorf("store.Node.Wire leaves wire.Node's %v unset (want only Online): a new wire.Node field needs a store.Node field, a column and a line in Wire", z)
	}
}

// TestNodeColumnsCarryEveryField checks that every field of store.Node
// survives the database: a node registered with an ephemeral key, given
// runtime facts and an approved route and read back has no field at its
// zero value but Tags (an untagged node has none); tagged, it reads its
// tags back.
func TestNodeColumnsCarryEveryField(t *testing.T) { forEachStore(t, testNodeColumnsCarryEveryField) }

func testNodeColumnsCarryEveryField(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	k := f.key(AuthKeyRequest{User: "alice", Reusable: true, Ephemeral: true})
	n := f.register(k, "busan")
	var rt NodeRuntime
	tstest.Fill(&rt)
	if _, err := f.s.UpdateNodeRuntime(ctx, n.ID, func(cur *NodeRuntime) { *cur = rt }); err != nil {
		t.Fatal(err)
	}
	route := netip.MustParsePrefix("192.168.1.0/24")
	if _, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{route}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.ApproveRoute(ctx, n.ID, route); err != nil {
		t.Fatal(err)
	}
	untagged, err := f.s.GetNode(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if z := tstest.ZeroFields(&untagged); !slices.Equal(z, []string{"Tags"}) {
		t.Errorf("an untagged node read back has %v zero, want only Tags: a store.Node field is not in the columns (nodeColumns, scanNode)", z)
	}
	if got := untagged.NodeRuntime; !reflect.DeepEqual(got, rt) {
		t.Errorf("runtime read back = %+v, want %+v", got, rt)
	}
	if _, err := f.s.SetNodeTags(ctx, n.ID, []string{"tag:server"}); err != nil {
		t.Fatal(err)
	}
	tagged, err := f.s.GetNode(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(tagged.Tags) == 0 {
		t.Error("tags not read back")
	}
}

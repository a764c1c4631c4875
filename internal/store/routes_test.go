package store

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) { forEachStore(t, testRoutes) }

func testRoutes(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	n := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	v4all, v6all := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	lan := netip.MustParsePrefix("192.168.1.0/24")

	if _, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("non-canonical prefix = %v", err)
	}
	// The same words as the node's refusal (tailnet.CheckRoute).
	if _, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24")}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "overlaps the tailnet") {
		t.Fatalf("route overlapping the tailnet = %v", err)
	}
	if _, err := f.s.ApproveRoute(ctx, n.ID, v4all); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approving unadvertised route = %v", err)
	}
	got, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{v6all, lan, v4all})
	if err != nil || len(got.AdvertisedRoutes) != 3 || len(got.EnabledRoutes()) != 0 {
		t.Fatalf("advertised: %+v, %v", got.AdvertisedRoutes, err)
	}
	for _, p := range []netip.Prefix{v4all, v6all} {
		if got, err = f.s.ApproveRoute(ctx, n.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	if en := got.EnabledRoutes(); len(en) != 2 || en[0] != v4all || en[1] != v6all {
		t.Fatalf("enabled %v", en)
	}
	w := got.Wire()
	if len(w.Routes) != 2 || len(w.AllowedIPs) != 4 {
		t.Fatalf("wire routes %v allowed %v", w.Routes, w.AllowedIPs)
	}

	// Switching the exit node off keeps the approval; on again, it is
	// enabled at once.
	got, _ = f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{lan})
	if len(got.EnabledRoutes()) != 0 || len(got.ApprovedRoutes) != 2 {
		t.Fatalf("after withdrawal: adv %v appr %v", got.AdvertisedRoutes, got.ApprovedRoutes)
	}
	got, _ = f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{lan, v4all, v6all})
	if len(got.EnabledRoutes()) != 2 {
		t.Fatalf("after re-advertising: %v", got.EnabledRoutes())
	}

	if got, err = f.s.RejectRoute(ctx, n.ID, v6all); err != nil || len(got.EnabledRoutes()) != 1 {
		t.Fatalf("reject: %v, %v", got.EnabledRoutes(), err)
	}
	if _, err := f.s.RejectRoute(ctx, n.ID, netip.MustParsePrefix("10.0.0.0/8")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reject unknown = %v", err)
	}
	rs, err := f.s.ListRoutes(ctx)
	if err != nil || len(rs) != 3 {
		t.Fatalf("ListRoutes = %+v, %v", rs, err)
	}
	if rs[0].Prefix != v4all || !rs[0].Enabled() || rs[1].Prefix != lan || rs[1].Approved || rs[2].Prefix != v6all || rs[2].Enabled() {
		t.Fatalf("ListRoutes = %+v", rs)
	}
	// One node's routes: n's alone, not those of another node that
	// advertises the same and other prefixes.
	other := f.register(f.key(AuthKeyRequest{User: "alice"}), "daegu")
	if _, err := f.s.SetAdvertisedRoutes(ctx, other.ID, []netip.Prefix{lan, netip.MustParsePrefix("10.9.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	mine, err := f.s.ListNodeRoutes(ctx, n.ID)
	if err != nil || len(mine) != 3 {
		t.Fatalf("ListNodeRoutes = %+v, %v; want busan's 3", mine, err)
	}
	for i := range mine {
		if mine[i] != rs[i] {
			t.Fatalf("ListNodeRoutes[%d] = %+v, ListRoutes has %+v", i, mine[i], rs[i])
		}
	}
	if theirs, err := f.s.ListNodeRoutes(ctx, other.ID); err != nil || len(theirs) != 2 || theirs[0].NodeName != "daegu" || theirs[0].Prefix != netip.MustParsePrefix("10.9.0.0/16") {
		t.Fatalf("ListNodeRoutes(daegu) = %+v, %v", theirs, err)
	}
	if none, err := f.s.ListNodeRoutes(ctx, other.ID+100); err != nil || len(none) != 0 {
		t.Fatalf("ListNodeRoutes(no such node) = %+v, %v", none, err)
	}
	if err := f.s.DeleteNode(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteNode(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if rs, _ := f.s.ListRoutes(ctx); len(rs) != 0 {
		t.Fatalf("routes of deleted node remain: %v", rs)
	}
}

package control

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"weft/internal/wire"
)

var (
	exitRoutes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	lanRoute   = netip.MustParsePrefix("192.168.1.0/24")
)

// peerView folds map messages into the records of one peer, so a test can
// wait for what the receiver believes about it.
type peerView struct {
	id   wire.NodeID
	last *wire.Node
}

// await reads n's map messages until the peer's record satisfies ok.
func (v *peerView) await(t *testing.T, n *simNode, what string, ok func(*wire.Node) bool) *wire.Node {
	t.Helper()
	for range 50 {
		if v.last != nil && ok(v.last) {
			return v.last
		}
		r := n.next(t)
		for _, p := range append(r.Peers, r.PeersChanged...) {
			if p.ID == v.id {
				v.last = p
			}
		}
	}
	t.Fatalf("%s: never saw %s; last record %+v", n.name, what, v.last)
	return nil
}

func routesAre(want ...netip.Prefix) func(*wire.Node) bool {
	return func(n *wire.Node) bool { return samePrefixSet(n.Routes, want) && len(n.Routes) == len(want) }
}

// TestAdvertisedRoutesNeedApproval checks the whole route life cycle as
// peers see it: an offer alone changes nothing in peers' maps; an
// administrator's approval reaches them as a delta with the routes in
// Routes and AllowedIPs; a changed offer (an Update) and a rejection are
// sent the same way; and the approval of a withdrawn offer is remembered.
func TestAdvertisedRoutesNeedApproval(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	nodes := h.registeredNodes(t, "busan", "mac")
	busan, mac := nodes[0], nodes[1]
	busan.routes = exitRoutes
	if err := busan.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer busan.close()
	busan.next(t) // the offer is stored before the full map is sent
	if err := mac.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer mac.close()
	id := busan.self.ID

	stored, err := h.st.GetNode(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !samePrefixSet(stored.AdvertisedRoutes, exitRoutes) {
		t.Fatalf("stored advertised routes = %v, want %v", stored.AdvertisedRoutes, exitRoutes)
	}
	v := &peerView{id: id}
	got := v.await(t, mac, "busan in the map", func(*wire.Node) bool { return true })
	if len(got.Routes) != 0 {
		t.Fatalf("unapproved offer reached a peer: routes %v", got.Routes)
	}

	steps := []struct {
		name   string
		change func() error
		want   []netip.Prefix
	}{
		{"approve exit", func() error {
			for _, p := range exitRoutes {
				if _, err := h.st.ApproveRoute(ctx, id, p); err != nil {
					return err
				}
			}
			h.srv.NodeChanged(id)
			return nil
		}, exitRoutes},
		{"offer a subnet instead", func() error {
			return busan.sendUpdate(&wire.Update{HomeRegion: -1, AdvertisedRoutes: &[]netip.Prefix{lanRoute}})
		}, nil},
		{"approve the subnet", func() error {
			if _, err := h.st.ApproveRoute(ctx, id, lanRoute); err != nil {
				return err
			}
			h.srv.NodeChanged(id)
			return nil
		}, []netip.Prefix{lanRoute}},
		{"offer exit again: its approval was kept", func() error {
			routes := append(slices.Clone(exitRoutes), lanRoute)
			return busan.sendUpdate(&wire.Update{HomeRegion: -1, AdvertisedRoutes: &routes})
		}, append(slices.Clone(exitRoutes), lanRoute)},
		{"reject the subnet", func() error {
			if _, err := h.st.RejectRoute(ctx, id, lanRoute); err != nil {
				return err
			}
			h.srv.NodeChanged(id)
			return nil
		}, exitRoutes},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.change(); err != nil {
				t.Fatal(err)
			}
			n := v.await(t, mac, "routes "+s.name, routesAre(s.want...))
			for _, p := range s.want {
				if !slices.Contains(n.AllowedIPs, p) {
					t.Errorf("allowed IPs %v lack enabled route %v", n.AllowedIPs, p)
				}
			}
			if len(n.AllowedIPs) != len(n.Addresses)+len(s.want) {
				t.Errorf("allowed IPs %v, want addresses %v plus %v", n.AllowedIPs, n.Addresses, s.want)
			}
		})
	}
}

// TestReconnectWithoutRoutesWithdrawsThem: a map request is the node's
// whole offer, so a node that comes back offering nothing loses its
// routes in peers' maps.
func TestReconnectWithoutRoutesWithdrawsThem(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	nodes := h.registeredNodes(t, "busan", "mac")
	busan, mac := nodes[0], nodes[1]
	busan.routes = []netip.Prefix{lanRoute}
	if err := busan.stream(ctx); err != nil {
		t.Fatal(err)
	}
	busan.next(t)
	if _, err := h.st.ApproveRoute(ctx, busan.self.ID, lanRoute); err != nil {
		t.Fatal(err)
	}
	h.srv.NodeChanged(busan.self.ID)
	if err := mac.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer mac.close()
	v := &peerView{id: busan.self.ID}
	v.await(t, mac, "the approved subnet", routesAre(lanRoute))

	busan.close()
	busan.routes = nil
	if err := busan.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer busan.close()
	v.await(t, mac, "no routes after busan came back offering none", routesAre())
	stored, err := h.st.GetNode(ctx, busan.self.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.AdvertisedRoutes) != 0 || !slices.Contains(stored.ApprovedRoutes, lanRoute) {
		t.Errorf("stored advertised %v approved %v; want none advertised, the approval kept", stored.AdvertisedRoutes, stored.ApprovedRoutes)
	}
}

func TestSamePrefixSet(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		a, b []netip.Prefix
		want bool
	}{
		{"both empty", nil, []netip.Prefix{}, true},
		{"order", []netip.Prefix{p("::/0"), p("0.0.0.0/0")}, []netip.Prefix{p("0.0.0.0/0"), p("::/0")}, true},
		{"duplicates", []netip.Prefix{p("10.0.0.0/8"), p("10.0.0.0/8")}, []netip.Prefix{p("10.0.0.0/8")}, true},
		{"length differs", []netip.Prefix{p("10.0.0.0/8")}, []netip.Prefix{p("10.0.0.0/16")}, false},
		{"one missing", []netip.Prefix{p("10.0.0.0/8")}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := samePrefixSet(tt.a, tt.b); got != tt.want {
				t.Errorf("samePrefixSet(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

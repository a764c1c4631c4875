package node_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/localapi/localapitest"
	"weft/internal/node"
	"weft/internal/nodestate"
	"weft/internal/store"
	"weft/internal/tailnet"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
	"weft/internal/wire"
)

// daemonNode is a Daemon behind its local API socket, as the CLI sees it.
type daemonNode struct {
	d     *node.Daemon
	st    *nodestate.Dir
	lc    *localapi.Client
	close func()
}

func startDaemon(t *testing.T) *daemonNode {
	t.Helper()
	d, st := newDaemon(t)
	sock, stop := localapitest.Serve(t, d)
	n := &daemonNode{d: d, st: st, lc: &localapi.Client{Socket: sock}, close: func() {
		stop()
		d.Close()
	}}
	t.Cleanup(n.close)
	return n
}

func ptr[T any](v T) *T { return &v }

func peerByName(st *localapi.Status, name string) *wire.Node {
	for _, p := range st.Peers {
		if p.Name == name {
			return p.Node
		}
	}
	return nil
}

// TestDaemonRoutePrefs drives the preferences through the local API as
// `weft up` and `weft set` do: an offer reaches the server, an exit node
// can only be chosen once approved and online, only the given fields
// change, bad input changes nothing and says what to do.
func TestDaemonRoutePrefs(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	k := e.AuthKey(true)
	busan, mac := startDaemon(t), startDaemon(t)
	lan := netip.MustParsePrefix("192.168.1.0/24")
	if _, err := busan.lc.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "busan",
		Prefs: &localapi.PrefsEdit{AdvertiseExitNode: ptr(true), AdvertiseRoutes: &[]netip.Prefix{lan}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := mac.lc.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "mac"}); err != nil {
		t.Fatal(err)
	}
	stored, err := e.Store.GetNodeByName(ctx, "busan")
	if err != nil {
		t.Fatal(err)
	}
	want := append(tailnet.ExitRoutes(), lan)
	if len(stored.AdvertisedRoutes) != len(want) {
		t.Fatalf("server recorded offer %v, want %v", stored.AdvertisedRoutes, want)
	}
	macSees := func(what string, ok func(busan *wire.Node) bool) {
		t.Helper()
		tstest.Eventually(t, what, func() bool {
			st, err := mac.lc.Status(ctx)
			if err != nil {
				return false
			}
			b := peerByName(st, "busan")
			return b != nil && ok(b)
		})
	}
	macSees("busan online", func(b *wire.Node) bool { return b.Online })

	set := func(n *daemonNode, edit localapi.PrefsEdit) (*localapi.Prefs, error) {
		return n.lc.EditPrefs(ctx, edit)
	}
	if _, err := set(mac, localapi.PrefsEdit{ExitNode: ptr("busan")}); err == nil || !strings.Contains(err.Error(), "weft admin routes approve busan exit") {
		t.Fatalf("choosing an unapproved exit node: %v, want advice to approve it", err)
	}
	approveExitRoutes(t, e, stored.ID)
	macSees("busan's approved exit routes", func(b *wire.Node) bool { return slices.Contains(b.Routes, tailnet.ExitRoutes()[0]) })
	busanAddr := ""
	if st, _ := mac.lc.Status(ctx); st != nil {
		busanAddr = peerByName(st, "busan").Addresses[0].Addr().String()
	}

	steps := []struct {
		name    string
		node    *daemonNode
		edit    localapi.PrefsEdit
		wantErr string // substring; empty for success
		check   func(p *localapi.Prefs) bool
	}{
		{"exit node by name", mac, localapi.PrefsEdit{ExitNode: ptr("busan")}, "",
			func(p *localapi.Prefs) bool {
				return p.ExitNode == "busan" && p.ExitNodeID == stored.ID && !p.AcceptRoutes
			}},
		{"only given fields change", mac, localapi.PrefsEdit{AcceptRoutes: ptr(true), ExitNodeAllowLAN: ptr(true)}, "",
			func(p *localapi.Prefs) bool { return p.ExitNode == "busan" && p.AcceptRoutes && p.ExitNodeAllowLAN }},
		{"unknown exit node", mac, localapi.PrefsEdit{ExitNode: ptr("seoul")}, "no peer in the tailnet", nil},
		{"self as exit node", mac, localapi.PrefsEdit{ExitNode: ptr("mac")}, "is this node", nil},
		{"exit node by address", mac, localapi.PrefsEdit{ExitNode: ptr(busanAddr)}, "",
			func(p *localapi.Prefs) bool { return p.ExitNode == "busan" && p.ExitNodeID == stored.ID }},
		{"clear the exit node", mac, localapi.PrefsEdit{ExitNode: ptr("")}, "",
			func(p *localapi.Prefs) bool { return p.ExitNode == "" && p.ExitNodeID == 0 && p.AcceptRoutes }},
		{"default route as a subnet", busan, localapi.PrefsEdit{AdvertiseRoutes: &[]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, "--advertise-exit-node", nil},
		{"tailnet range", busan, localapi.PrefsEdit{AdvertiseRoutes: &[]netip.Prefix{netip.MustParsePrefix("100.64.0.0/16")}}, "overlaps the tailnet", nil},
		{"host bits", busan, localapi.PrefsEdit{AdvertiseRoutes: &[]netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}}, "did you mean 192.168.1.0/24", nil},
		{"keep source addresses", busan, localapi.PrefsEdit{SNATSubnetRoutes: ptr(false)}, "",
			func(p *localapi.Prefs) bool {
				return !p.SNATSubnetRoutes && p.AdvertiseExitNode && slices.Equal(p.AdvertiseRoutes, []netip.Prefix{lan})
			}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before, _ := s.node.st.LoadPrefs()
			p, err := set(s.node, s.edit)
			if s.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), s.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, s.wantErr)
				}
				if after, _ := s.node.st.LoadPrefs(); after.ExitNode != before.ExitNode || !slices.Equal(after.AdvertiseRoutes, before.AdvertiseRoutes) {
					t.Errorf("a refused edit changed the saved prefs: %+v -> %+v", before, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !s.check(p) {
				t.Fatalf("prefs after edit: %+v", p)
			}
			st, err := s.node.lc.Status(ctx)
			if err != nil || st.Prefs == nil || !s.check(st.Prefs) {
				t.Fatalf("status prefs: %+v %v", st.Prefs, err)
			}
		})
	}

	// Withdrawing the offer takes the routes out of mac's map; the exit
	// node cannot be chosen any more.
	if _, err := set(busan, localapi.PrefsEdit{AdvertiseExitNode: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	macSees("busan's exit routes withdrawn", func(b *wire.Node) bool { return len(b.Routes) == 0 })
	if _, err := set(mac, localapi.PrefsEdit{ExitNode: ptr("busan")}); err == nil || !strings.Contains(err.Error(), "does not offer itself") {
		t.Fatalf("choosing a withdrawn exit node: %v", err)
	}
	// Offered again, the approval is still there; but once busan is
	// down it cannot be chosen.
	if _, err := set(busan, localapi.PrefsEdit{AdvertiseExitNode: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	macSees("busan's exit routes back", func(b *wire.Node) bool { return len(b.Routes) == 2 })
	if err := busan.lc.Down(ctx); err != nil {
		t.Fatal(err)
	}
	macSees("busan offline", func(b *wire.Node) bool { return !b.Online })
	if _, err := set(mac, localapi.PrefsEdit{ExitNode: ptr("busan")}); err == nil || !strings.Contains(err.Error(), "offline") {
		t.Fatalf("choosing an offline exit node: %v", err)
	}
	// `weft up --exit-node` with an unknown node: up, but without it.
	_, err = mac.lc.Up(ctx, localapi.UpRequest{Prefs: &localapi.PrefsEdit{ExitNode: ptr("seoul")}})
	if err == nil || !strings.Contains(err.Error(), "without an exit node") {
		t.Fatalf("up with an unknown exit node: %v", err)
	}
	if p, _ := mac.st.LoadPrefs(); p.ExitNode != "" || !p.WantUp {
		t.Errorf("after up with a bad exit node: exit node %q, want up %v", p.ExitNode, p.WantUp)
	}
}

// approveExitRoutes approves node id's exit routes as an administrator
// would and tells the server, so that peers learn them.
func approveExitRoutes(t *testing.T, e *controltest.Env, id wire.NodeID) {
	t.Helper()
	for _, p := range tailnet.ExitRoutes() {
		if _, err := e.Store.ApproveRoute(context.Background(), id, p); err != nil {
			t.Fatal(err)
		}
	}
	e.Server.NodeChanged(id)
}

// startExitPair brings up busan offering itself as exit node, approves
// its exit routes, and brings up mac using it. It returns both daemons
// and busan as the server stores it.
func startExitPair(t *testing.T, e *controltest.Env) (busan, mac *daemonNode, stored store.Node) {
	t.Helper()
	ctx := context.Background()
	k := e.AuthKey(true)
	busan, mac = startDaemon(t), startDaemon(t)
	if _, err := busan.lc.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "busan",
		Prefs: &localapi.PrefsEdit{AdvertiseExitNode: ptr(true)}}); err != nil {
		t.Fatal(err)
	}
	stored, err := e.Store.GetNodeByName(ctx, "busan")
	if err != nil {
		t.Fatal(err)
	}
	approveExitRoutes(t, e, stored.ID)
	if _, err := mac.lc.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "mac",
		Prefs: &localapi.PrefsEdit{ExitNode: ptr("busan")}}); err != nil {
		t.Fatal(err)
	}
	return busan, mac, stored
}

// TestExitNodeFollowsRename: the exit node is kept by its node ID, so an
// administrator renaming it changes only the name mac shows.
func TestExitNodeFollowsRename(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	_, mac, stored := startExitPair(t, e)
	if p, _ := mac.st.LoadPrefs(); p.ExitNodeID != stored.ID {
		t.Fatalf("up --exit-node busan saved exit node %q id %d, want busan's id %d", p.ExitNode, p.ExitNodeID, stored.ID)
	}
	if _, err := e.Store.RenameNode(ctx, stored.ID, "jeju"); err != nil {
		t.Fatal(err)
	}
	e.Server.NodeChanged(stored.ID)
	tstest.Eventually(t, "mac shows its exit node as jeju", func() bool {
		st, err := mac.lc.Status(ctx)
		return err == nil && st.Prefs != nil && st.Prefs.ExitNode == "jeju" && st.Prefs.ExitNodeID == stored.ID
	})
	if p, _ := mac.st.LoadPrefs(); p.ExitNode != "jeju" || p.ExitNodeID != stored.ID {
		t.Errorf("saved prefs after the rename: exit node %q id %d", p.ExitNode, p.ExitNodeID)
	}
}

// TestOfflineExitNodeIsAHealthLine: when the chosen exit node goes
// offline, the client's status says so and what to do; when it is back,
// the line goes.
func TestOfflineExitNodeIsAHealthLine(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	busan, mac, _ := startExitPair(t, e)
	offline := func() bool {
		st, err := mac.lc.Status(ctx)
		return err == nil && slices.ContainsFunc(st.Health, func(h string) bool {
			return strings.Contains(h, "exit node busan is offline") && strings.Contains(h, "weft set --exit-node")
		})
	}
	if offline() {
		t.Fatal("health says busan is offline while it is up")
	}
	if err := busan.lc.Down(ctx); err != nil {
		t.Fatal(err)
	}
	tstest.Eventually(t, "mac's health names busan offline", offline)
	if _, err := busan.lc.Up(ctx, localapi.UpRequest{}); err != nil {
		t.Fatal(err)
	}
	tstest.Eventually(t, "the line gone once busan is back", func() bool { return !offline() })
}

func TestRoutePrefsResolveExitNode(t *testing.T) {
	exit := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	nm := &controlclient.NetMap{
		Self: &wire.Node{ID: 1, Name: "mac"},
		Peers: map[wire.NodeID]*wire.Node{
			2: {ID: 2, Name: "jeju", Routes: exit},
			3: {ID: 3, Name: "pc"},
		},
	}
	tests := []struct {
		name    string
		rp      node.RoutePrefs
		wantID  wire.NodeID
		wantErr error
	}{
		{"by id after a rename", node.RoutePrefs{ExitNodeID: 2, ExitNode: "busan"}, 2, nil},
		{"by name before the id is known", node.RoutePrefs{ExitNode: "jeju"}, 2, nil},
		{"old name without id", node.RoutePrefs{ExitNode: "busan"}, 0, controlclient.ErrExitNodeNotFound},
		{"id gone", node.RoutePrefs{ExitNodeID: 9, ExitNode: "busan"}, 0, controlclient.ErrExitNodeNotFound},
		{"id not an exit node", node.RoutePrefs{ExitNodeID: 3, ExitNode: "pc"}, 0, controlclient.ErrNotAnExitNode},
		{"id is self", node.RoutePrefs{ExitNodeID: 1, ExitNode: "mac"}, 0, controlclient.ErrExitNodeIsSelf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.rp.ResolveExitNode(nm)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && n.ID != tt.wantID {
				t.Errorf("resolved node %d, want %d", n.ID, tt.wantID)
			}
		})
	}
}

func TestAdvertisedRoutes(t *testing.T) {
	lan := netip.MustParsePrefix("192.168.1.0/24")
	tests := []struct {
		name string
		p    nodestate.Prefs
		want []netip.Prefix
	}{
		{"nothing", nodestate.Prefs{}, nil},
		{"exit node", nodestate.Prefs{AdvertiseExitNode: true}, tailnet.ExitRoutes()},
		{"exit node and subnet", nodestate.Prefs{AdvertiseExitNode: true, AdvertiseRoutes: []netip.Prefix{lan, lan}},
			append(tailnet.ExitRoutes(), lan)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := node.AdvertisedRoutes(tt.p); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

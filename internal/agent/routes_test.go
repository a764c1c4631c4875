package agent

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/magicsock"
	"weft/internal/node"
	"weft/internal/osnet"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

func TestRoutePrefsToConfig(t *testing.T) {
	pfx := netip.MustParsePrefix
	lan, lan2 := pfx("192.168.1.0/24"), pfx("10.9.0.0/16")
	busanKey, pcKey := key.NewNode().Public(), key.NewNode().Public()
	nm := &controlclient.NetMap{
		Self: &wire.Node{ID: 1, Name: "mac", Addresses: []netip.Prefix{pfx("100.64.0.1/32")}},
		Peers: map[wire.NodeID]*wire.Node{
			2: {ID: 2, Name: "busan", NodeKey: busanKey, Addresses: []netip.Prefix{pfx("100.64.0.2/32")},
				Routes: append(slices.Clone(tailnet.ExitRoutes()), lan)},
			3: {ID: 3, Name: "pc", NodeKey: pcKey, Addresses: []netip.Prefix{pfx("100.64.0.3/32")}, Routes: []netip.Prefix{lan2}},
		},
	}
	tests := []struct {
		name     string
		rp       node.RoutePrefs
		wantExit key.NodePublic
		wantOS   osnet.Config
	}{
		{"nothing chosen", node.RoutePrefs{}, key.NodePublic{}, osnet.Config{}},
		{"accept routes: subnets, never default routes", node.RoutePrefs{AcceptRoutes: true}, key.NodePublic{},
			osnet.Config{SubnetRoutes: []netip.Prefix{lan, lan2}}},
		{"exit node by name, LAN allowed", node.RoutePrefs{ExitNode: "busan", ExitNodeAllowLAN: true}, busanKey,
			osnet.Config{ExitNode: true, ExitNodeAllowLAN: true}},
		{"unresolvable exit node holds traffic back", node.RoutePrefs{ExitNode: "pc"}, key.NodePublic{},
			osnet.Config{ExitNode: true}},
		{"allow-LAN alone does nothing", node.RoutePrefs{ExitNodeAllowLAN: true}, key.NodePublic{}, osnet.Config{}},
		{"offers", node.RoutePrefs{AdvertiseExitNode: true, AdvertiseRoutes: []netip.Prefix{lan}, NoSNATSubnetRoutes: true}, key.NodePublic{},
			osnet.Config{AdvertiseExitNode: true, AdvertiseRoutes: []netip.Prefix{lan}, NoSNATSubnetRoutes: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Engine{log: slog.New(slog.DiscardHandler)}
			opts := e.wgOptions(nm, tt.rp)
			if opts.ExitNode != tt.wantExit || opts.AcceptRoutes != tt.rp.AcceptRoutes {
				t.Errorf("wgcfg options = %+v, want exit node %v", opts, tt.wantExit)
			}
			var oc osnet.Config
			addRoutePrefs(&oc, nm, tt.rp)
			slices.SortFunc(oc.SubnetRoutes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
			slices.SortFunc(tt.wantOS.SubnetRoutes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
			if !routePartsEqual(oc, tt.wantOS) {
				t.Errorf("osnet config = %+v, want %+v", oc, tt.wantOS)
			}
		})
	}
}

// TestEndpointFilter: a peer's endpoints inside an accepted subnet route
// are dropped (they would be reached through the tunnel itself), unless
// the host sits on that network.
func TestEndpointFilter(t *testing.T) {
	pfx, ap := netip.MustParsePrefix, netip.MustParseAddrPort
	busan := &wire.Node{ID: 2, Name: "busan", Routes: []netip.Prefix{pfx("192.168.1.0/24")},
		Endpoints: []netip.AddrPort{ap("203.0.113.21:41641"), ap("192.168.1.10:41641")}}
	nm := &controlclient.NetMap{Self: &wire.Node{ID: 1, Name: "mac"}, Peers: map[wire.NodeID]*wire.Node{2: busan}}
	tests := []struct {
		name  string
		rp    node.RoutePrefs
		local []netip.Prefix
		want  []netip.AddrPort
	}{
		{"routes not accepted", node.RoutePrefs{}, nil, busan.Endpoints},
		{"accepted: LAN endpoint dropped", node.RoutePrefs{AcceptRoutes: true}, []netip.Prefix{pfx("192.168.2.0/24")},
			[]netip.AddrPort{ap("203.0.113.21:41641")}},
		{"accepted, but on that LAN", node.RoutePrefs{AcceptRoutes: true}, []netip.Prefix{pfx("192.168.1.0/24")}, busan.Endpoints},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := endpointFilter(nm, tt.rp, tt.local)(busan)
			if !slices.Equal(got.Endpoints, tt.want) {
				t.Errorf("endpoints = %v, want %v", got.Endpoints, tt.want)
			}
			if len(busan.Endpoints) != 2 {
				t.Fatal("the map's record was modified")
			}
		})
	}
}

type countingBind struct {
	conn.Bind
	sent []netip.Addr
}

func (b *countingBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.sent = append(b.sent, ep.DstIP())
	return nil
}

// TestGuardedBind: weft's own UDP to an address inside a tunneled subnet
// route is dropped; everything else passes.
func TestGuardedBind(t *testing.T) {
	var tunneled atomic.Pointer[[]netip.Prefix]
	inner := &countingBind{}
	b := guardedBind{Bind: inner, tunneled: &tunneled}
	send := func(s string) {
		b.Send([][]byte{{1}}, &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort(s)})
	}
	send("192.168.1.10:41641") // nothing tunneled yet
	routes := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	tunneled.Store(&routes)
	send("192.168.1.10:41641")
	send("203.0.113.21:41641")
	want := []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("203.0.113.21")}
	if !slices.Equal(inner.sent, want) {
		t.Errorf("sent to %v, want %v", inner.sent, want)
	}
}

// wakingBind is a bind that can wake its reads (magicsock.ReadWaker).
type wakingBind struct {
	countingBind
	woken int
}

func (b *wakingBind) WakeReads() bool { b.woken++; return true }

// TestGuardedBindForwards: the guard passes on what magicsock asks of the
// bind beyond conn.Bind (the IPv6 port and waking the reads), or the
// Conn would fall back to a wake-up datagram that sockets bound to an
// interface (macOS) may never get.
func TestGuardedBindForwards(t *testing.T) {
	var tunneled atomic.Pointer[[]netip.Prefix]
	inner := &wakingBind{}
	if !(guardedBind{Bind: inner, tunneled: &tunneled}).WakeReads() || inner.woken != 1 {
		t.Errorf("WakeReads through the guard: inner woken %d times; want once, reported true", inner.woken)
	}
	if (guardedBind{Bind: &countingBind{}, tunneled: &tunneled}).WakeReads() {
		t.Error("WakeReads reported true for an inner bind that cannot wake")
	}
	if _, ok := (magicsock.HostNetwork{}).NewBind().(magicsock.ReadWaker); !ok {
		t.Error("the host's bind does not implement magicsock.ReadWaker; the guard would have nothing to forward")
	}
}

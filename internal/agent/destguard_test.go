package agent

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"weft/internal/controlclient"
	"weft/internal/node"
	"weft/internal/tstest"
	"weft/internal/wire"
)

func TestDestPolicy(t *testing.T) {
	pfx := netip.MustParsePrefix
	self := &wire.Node{
		Addresses: []netip.Prefix{pfx("100.64.0.1/32"), pfx("fd7a:1:2::6440:1/128")},
		Routes:    []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0"), pfx("192.168.1.0/24")},
	}
	nm := &controlclient.NetMap{Self: self}
	tests := []struct {
		name string
		rp   node.RoutePrefs
		dst  string
		want string
	}{
		{"own IPv4", node.RoutePrefs{}, "100.64.0.1", ""},
		{"own IPv6", node.RoutePrefs{}, "fd7a:1:2::6440:1", ""},
		{"internet, no offer", node.RoutePrefs{}, "203.0.113.80", refusedNotRouted},
		{"LAN, no offer", node.RoutePrefs{}, "192.168.1.5", refusedNotRouted},
		{"internet, exit offered and approved", node.RoutePrefs{AdvertiseExitNode: true}, "203.0.113.80", ""},
		{"internet v6, exit offered and approved", node.RoutePrefs{AdvertiseExitNode: true}, "2001:db8::1", ""},
		{"LAN, subnet offered and approved", node.RoutePrefs{AdvertiseRoutes: []netip.Prefix{pfx("192.168.1.0/24")}}, "192.168.1.5", ""},
		{"internet, only the subnet offered", node.RoutePrefs{AdvertiseRoutes: []netip.Prefix{pfx("192.168.1.0/24")}}, "203.0.113.80", refusedNotRouted},
		{"offered, not approved", node.RoutePrefs{AdvertiseRoutes: []netip.Prefix{pfx("10.0.0.0/8")}}, "10.1.2.3", refusedNotRouted},
		{"metadata under exit", node.RoutePrefs{AdvertiseExitNode: true}, "169.254.169.254", refusedNever},
		{"link-local under exit", node.RoutePrefs{AdvertiseExitNode: true}, "169.254.1.1", refusedNever},
		{"loopback under exit", node.RoutePrefs{AdvertiseExitNode: true}, "127.0.0.1", refusedNever},
		{"v6 loopback under exit", node.RoutePrefs{AdvertiseExitNode: true}, "::1", refusedNever},
		{"v6 link-local under exit", node.RoutePrefs{AdvertiseExitNode: true}, "fe80::1", refusedNever},
		{"multicast under exit", node.RoutePrefs{AdvertiseExitNode: true}, "224.0.0.251", refusedNever},
		{"broadcast under exit", node.RoutePrefs{AdvertiseExitNode: true}, "255.255.255.255", refusedNever},
		{"another tailnet node under exit", node.RoutePrefs{AdvertiseExitNode: true}, "100.64.0.2", refusedNever},
		{"another tailnet node v6 under exit", node.RoutePrefs{AdvertiseExitNode: true}, "fd7a:1:2::6440:2", refusedNever},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newDestPolicy(nm, tt.rp).check(netip.MustParseAddr(tt.dst)); got != tt.want {
				t.Errorf("check(%s) = %q, want %q", tt.dst, got, tt.want)
			}
		})
	}
	var none *destPolicy
	if none.check(netip.MustParseAddr("100.64.0.1")) == "" {
		t.Error("before the first map, a packet passed")
	}
}

// recTUN records what is written to it.
type recTUN struct {
	tun.Device
	got [][]byte
}

func (r *recTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		r.got = append(r.got, b[offset:])
	}
	return len(bufs), nil
}

func TestDestGuardWrite(t *testing.T) {
	pkt := func(dst string) []byte {
		b := make([]byte, 4+20) // 4 bytes of offset, then an IPv4 header
		b[4] = 0x45
		a := netip.MustParseAddr(dst).As4()
		copy(b[4+16:], a[:])
		return b
	}
	rec := &recTUN{}
	g := &destGuard{Device: rec}
	g.policy.Store(&destPolicy{self: []netip.Addr{netip.MustParseAddr("100.64.0.1")}})
	bufs := [][]byte{pkt("203.0.113.1"), pkt("100.64.0.1"), pkt("8.8.8.8"), pkt("100.64.0.1"), {0, 0, 0, 0, 0x45}}
	n, err := g.Write(bufs, 4)
	if n != len(bufs) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil (refused packets are no error)", n, err, len(bufs))
	}
	if len(rec.got) != 2 || g.drops.Load() != 3 {
		t.Errorf("passed %d and dropped %d; want 2 passed (to self) and 3 dropped (two elsewhere, one truncated)", len(rec.got), g.drops.Load())
	}
}

// discardTUN takes writes and drops them.
type discardTUN struct{ tun.Device }

func (discardTUN) Write(bufs [][]byte, _ int) (int, error) { return len(bufs), nil }

// BenchmarkDestGuardWrite measures a batch of 64 packets written through
// destGuard to a device that discards them, against the same device
// without it (none), and, as the tunnel's own cost per packet, one
// ChaCha20-Poly1305 open of a 1,400-byte packet (decrypt_anchor), which
// wireguard-go does for every packet it receives.
func BenchmarkDestGuardWrite(b *testing.B) {
	pfx := netip.MustParsePrefix
	self := &wire.Node{
		Addresses: []netip.Prefix{pfx("100.64.0.1/32"), pfx("fd7a:1:2::6440:1/128")},
		Routes:    []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0"), pfx("192.168.1.0/24"), pfx("10.1.0.0/16"), pfx("10.2.0.0/16")},
	}
	nm := &controlclient.NetMap{Self: self}
	batch := func(dst string) [][]byte {
		bufs := make([][]byte, 64)
		for i := range bufs {
			b := make([]byte, 16+1400)
			b[16] = 0x45
			a := netip.MustParseAddr(dst).As4()
			copy(b[16+16:], a[:])
			bufs[i] = b
		}
		return bufs
	}
	for _, c := range []struct {
		name string
		dev  tun.Device
		bufs [][]byte
	}{
		{"none", discardTUN{}, batch("100.64.0.1")},
		{"to_self", guardOver(newDestPolicy(nm, node.RoutePrefs{})), batch("100.64.0.1")},
		{"exit_route", guardOver(newDestPolicy(nm, node.RoutePrefs{AdvertiseExitNode: true})), batch("203.0.113.80")},
		{"third_subnet_route", guardOver(newDestPolicy(nm, node.RoutePrefs{AdvertiseRoutes: self.Routes[2:]})), batch("10.2.3.4")},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if n, err := c.dev.Write(c.bufs, 16); n != 64 || err != nil {
					b.Fatal(n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/64, "ns/packet")
		})
	}
	b.Run("decrypt_anchor", tstest.DecryptAnchor)
}

func guardOver(p *destPolicy) *destGuard {
	g := &destGuard{Device: discardTUN{}}
	g.policy.Store(p)
	return g
}

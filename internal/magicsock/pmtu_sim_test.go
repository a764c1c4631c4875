package magicsock_test

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/magicsock"
	"weft/internal/magicsock/natsim"
)

// mtuHost is a simulated host whose route MTU toward every destination is
// limit, as the kernel would report it.
type mtuHost struct {
	*natsim.Host
	limit *atomic.Int64
}

func (h mtuHost) PathMTU(netip.AddrPort, uint32) (int, error) { return int(h.limit.Load()), nil }

// TestSimPathMTU: path MTU discovery over a simulated path that carries
// 1460-byte IP packets picks a tunnel MTU of 1380; when the path narrows
// to 1400 the next round lowers it to 1320; when the host's own route
// allows only 1280 no probe is sent and it falls to 1280. Lost probes never
// cost the direct path.
func TestSimPathMTU(t *testing.T) {
	sim := natsim.New(9)
	relay := newFakeRelay()
	var limitA, limitB atomic.Int64
	limitA.Store(1500)
	limitB.Store(1500)
	pubB := netip.MustParseAddr("198.51.100.20")
	a := newTNode(t, "a", mtuHost{sim.NewHost(publicA, nil), &limitA}, relay, 9, magicsock.GuessBudget{})
	b := newTNode(t, "b", mtuHost{sim.NewHost(pubB, nil), &limitB}, relay, 10, magicsock.GuessBudget{})
	a.conn.SetPeers([]magicsock.Peer{peerOf(b, []netip.AddrPort{netip.AddrPortFrom(pubB, b.conn.Port())}, false)})
	b.conn.SetPeers([]magicsock.Peer{peerOf(a, []netip.AddrPort{netip.AddrPortFrom(publicA, a.conn.Port())}, false)})
	traffic(t, a, b)
	if got := a.conn.TunnelMTU(); got != magicsock.MinTunnelMTU {
		t.Fatalf("tunnel MTU before any path = %d, want %d", got, magicsock.MinTunnelMTU)
	}
	waitMTU := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, pi := a.conn.TunnelMTU(), a.path(b)
			if got == want && pi.Kind == magicsock.PathDirect && pi.MTU == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: tunnel MTU %d, path %+v; want %d on a direct path", what, got, pi, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	sim.SetMaxPayload(1460 - 28)
	waitMTU("path of 1460", 1460-80)
	sim.SetMaxPayload(1400 - 28)
	waitMTU("path narrowed to 1400", 1400-80)
	limitA.Store(1280)
	waitMTU("route MTU of 1280", magicsock.MinTunnelMTU)
}

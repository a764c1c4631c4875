package magicsock_test

import (
	"context"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/magicsock"
	"weft/internal/magicsock/natsim"
	"weft/internal/tstest"
)

var (
	publicA = netip.MustParseAddr("198.51.100.1")
	publicB = netip.MustParseAddr("203.0.113.1")
	privA   = netip.MustParseAddr("192.168.1.2")
	privB   = netip.MustParseAddr("192.168.2.2")
)

// simPair is two nodes, each behind its own NAT (or none), sharing a relay.
type simPair struct {
	sim          *natsim.Network
	relay        *fakeRelay
	a, b         *tnode
	natA, natB   *natsim.NAT
	globA, globB netip.AddrPort
}

// siteKind is a NAT kind, or public for a host with no NAT.
type siteKind int

const (
	easy siteKind = iota
	hard
	public
)

func (k siteKind) String() string { return [...]string{"easy", "hard", "public"}[k] }

func newSimPair(t *testing.T, ka, kb siteKind, seed uint64) *simPair {
	t.Helper()
	return newSimPairTimers(t, ka, kb, seed, fastTimers)
}

func newSimPairTimers(t *testing.T, ka, kb siteKind, seed uint64, timers magicsock.Timers) *simPair {
	t.Helper()
	sp := &simPair{sim: natsim.New(seed), relay: newFakeRelay()}
	budget := magicsock.GuessBudget{Window: 2 * time.Second}
	host := func(k siteKind, priv, pub netip.Addr) (*natsim.Host, *natsim.NAT) {
		switch k {
		case public:
			return sp.sim.NewHost(pub, nil), nil
		case hard:
			nat := sp.sim.NewNAT(natsim.Hard, pub)
			return sp.sim.NewHost(priv, nat), nat
		}
		nat := sp.sim.NewNAT(natsim.Easy, pub)
		return sp.sim.NewHost(priv, nat), nat
	}
	hA, natA := host(ka, privA, publicA)
	hB, natB := host(kb, privB, publicB)
	sp.natA, sp.natB = natA, natB
	sp.a = newTNodeTimers(t, "a", hA, sp.relay, seed, budget, timers)
	sp.b = newTNodeTimers(t, "b", hB, sp.relay, seed+100, budget, timers)
	// The tests' STUN: an easy NAT keeps the inside port, so the public
	// endpoint is the public address with our port. Behind a hard NAT
	// the port a STUN server sees is useless to peers anyway.
	sp.globA = netip.AddrPortFrom(publicA, sp.a.conn.Port())
	sp.globB = netip.AddrPortFrom(publicB, sp.b.conn.Port())
	sp.a.conn.SetNetReport(magicsock.NetReport{MappingVariesByDestIP: ka == hard, GlobalV4: sp.globA})
	sp.b.conn.SetNetReport(magicsock.NetReport{MappingVariesByDestIP: kb == hard, GlobalV4: sp.globB})
	sp.a.conn.SetPeers([]magicsock.Peer{peerOf(sp.b, sp.b.conn.LocalEndpoints(), kb == hard)})
	sp.b.conn.SetPeers([]magicsock.Peer{peerOf(sp.a, sp.a.conn.LocalEndpoints(), ka == hard)})
	return sp
}

func (sp *simPair) bothDirect() bool {
	return sp.a.path(sp.b).Kind == magicsock.PathDirect && sp.b.path(sp.a).Kind == magicsock.PathDirect
}

func (sp *simPair) bothRelay() bool {
	return sp.a.path(sp.b).Kind == magicsock.PathRelay && sp.b.path(sp.a).Kind == magicsock.PathRelay
}

// flowing waits until both sides have received n more packets.
func (sp *simPair) flowing(t *testing.T, n int64, what string) {
	t.Helper()
	ra, rb := sp.a.received.Load(), sp.b.received.Load()
	tstest.EventuallyWithin(t, 10*time.Second, what, func() bool {
		return sp.a.received.Load() >= ra+n && sp.b.received.Load() >= rb+n
	})
}

// mostlyDirect checks that data moved off the relay: of the packets
// received while both paths are direct, at most a tenth came through the
// relay (a path may flap briefly when a busy machine delays heartbeats).
func (sp *simPair) mostlyDirect(t *testing.T) {
	t.Helper()
	relayed := sp.relay.data.Load()
	received := sp.a.received.Load() + sp.b.received.Load()
	sp.flowing(t, 50, "traffic on the direct path")
	moved := sp.relay.data.Load() - relayed
	total := sp.a.received.Load() + sp.b.received.Load() - received
	if moved*10 > total {
		t.Fatalf("%d of %d packets went through the relay on a direct path", moved, total)
	}
}

func TestSimPaths(t *testing.T) {
	tests := []struct {
		a, b       siteKind
		wantDirect bool
	}{
		{easy, easy, true},
		{easy, public, true},
		{public, hard, true}, // the hard side's pings reach a public host
		{easy, hard, true},   // port guessing
		{hard, easy, true},   // port guessing, the other way round
		{hard, hard, false},
	}
	for _, tt := range tests {
		t.Run(tt.a.String()+"/"+tt.b.String(), func(t *testing.T) {
			sp := newSimPair(t, tt.a, tt.b, 1)
			// Until the direct path can open, packets go through
			// the relay at once: nobody waits for a punch.
			sp.sim.SetDrop(func(src, dst netip.AddrPort) bool { return true })
			traffic(t, sp.a, sp.b)
			sp.flowing(t, 10, "traffic before a direct path")
			if sp.relay.data.Load() < 20 {
				t.Fatalf("only %d packets via the relay before a direct path", sp.relay.data.Load())
			}
			sp.sim.SetDrop(nil)
			if tt.wantDirect {
				tstest.EventuallyWithin(t, 15*time.Second, "both paths direct", sp.bothDirect)
				pa, pb := sp.a.path(sp.b), sp.b.path(sp.a)
				if pa.Endpoint.Addr() != publicB || pb.Endpoint.Addr() != publicA {
					t.Errorf("paths a→%v b→%v; want the public addresses %v and %v", pa, pb, publicB, publicA)
				}
				sp.mostlyDirect(t)
				return
			}
			// Several discovery rounds pass; the path must stay on
			// the relay and traffic keep flowing there.
			time.Sleep(10 * fastTimers.Discovery)
			sp.flowing(t, 20, "traffic over the relay")
			if !sp.bothRelay() {
				t.Fatalf("paths a→%v b→%v; want relay both ways", sp.a.path(sp.b), sp.b.path(sp.a))
			}
		})
	}
}

// TestSimEasyHardSuccessRate runs the port-guessing round over many NAT
// port layouts and reports how often it meets. With 256 sockets and 1024
// probes over 64,512 ports the odds are 1-(1-256/64512)^1024 ≈ 98%.
func TestSimEasyHardSuccessRate(t *testing.T) {
	if testing.Short() {
		t.Skip("many rounds; skipped with -short")
	}
	const runs = 20
	met := 0
	for seed := uint64(1); seed <= runs; seed++ {
		ok := t.Run("", func(t *testing.T) {
			sp := newSimPair(t, easy, hard, seed*7919)
			traffic(t, sp.a, sp.b)
			// A round lasts two windows at most; after that the
			// outcome is settled until the next round, 1s later.
			deadline := time.Now().Add(6 * time.Second)
			for !sp.bothDirect() {
				if time.Now().After(deadline) {
					t.Logf("seed %d: no meeting", seed*7919)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
		if ok {
			met++
		}
	}
	t.Logf("port guessing met in %d of %d easy/hard runs", met, runs)
	if met < runs*3/4 {
		t.Fatalf("port guessing met in only %d of %d runs; expected about 98%%", met, runs)
	}
}

func TestSimFallbackAndRecovery(t *testing.T) {
	sp := newSimPair(t, easy, easy, 2)
	traffic(t, sp.a, sp.b)
	tstest.EventuallyWithin(t, 10*time.Second, "direct", sp.bothDirect)

	// The direct path dies: no UDP between the two sites gets through.
	sp.sim.SetDrop(func(src, dst netip.AddrPort) bool { return true })
	tstest.EventuallyWithin(t, 10*time.Second, "fallback to relay", sp.bothRelay)
	relayed := sp.relay.data.Load()
	sp.flowing(t, 20, "traffic after fallback")
	if sp.relay.data.Load() <= relayed {
		t.Fatal("traffic after fallback did not go through the relay")
	}

	// It comes back: probing resumes and finds it again.
	sp.sim.SetDrop(nil)
	tstest.EventuallyWithin(t, 10*time.Second, "direct again", sp.bothDirect)
	sp.flowing(t, 20, "traffic after recovery")
}

// TestSimNATFlush flushes a masquerading router's state mid-traffic: the
// mappings come back with the same ports and the path heals by itself.
func TestSimNATFlush(t *testing.T) {
	sp := newSimPair(t, easy, easy, 3)
	traffic(t, sp.a, sp.b)
	tstest.EventuallyWithin(t, 10*time.Second, "direct", sp.bothDirect)
	sp.natA.Flush(false)
	sp.natB.Flush(false)
	sp.flowing(t, 50, "traffic after the flush")
	tstest.EventuallyWithin(t, 10*time.Second, "direct after the flush", sp.bothDirect)
}

// TestSimNATRebinding moves a node to a new public port (a router that
// reassigns ports): the peer learns the new address from the node's
// pings, sees its pings to the old one go unanswered, and the path
// follows without help and without waiting out the trust window.
func TestSimNATRebinding(t *testing.T) {
	// A trust window far longer than the test: the path must move
	// because its pings go unanswered, not because its trust ran out.
	timers := fastTimers
	timers.TrustWindow = time.Hour
	sp := newSimPairTimers(t, easy, public, 4, timers)
	// Equal delays on old and new path: the RTT rule alone would not
	// move the path.
	sp.sim.SetDelay(5 * time.Millisecond)
	traffic(t, sp.a, sp.b)
	tstest.EventuallyWithin(t, 10*time.Second, "direct", sp.bothDirect)
	old := sp.b.path(sp.a).Endpoint
	sp.natA.Flush(true)
	tstest.EventuallyWithin(t, 10*time.Second, "b follows a to its new port", func() bool {
		p := sp.b.path(sp.a)
		return p.Kind == magicsock.PathDirect && p.Endpoint != old
	})
	if got := sp.b.path(sp.a).Endpoint.Addr(); got != publicA {
		t.Fatalf("new path to a is %v; want an address of %v", got, publicA)
	}
	sp.flowing(t, 20, "traffic after rebinding")
	tstest.EventuallyWithin(t, 10*time.Second, "both direct after rebinding", sp.bothDirect)
}

// TestSimPing checks the disco ping weft ping uses: over the relay while
// there is no direct path, then over the direct path.
func TestSimPing(t *testing.T) {
	sp := newSimPair(t, easy, easy, 5)
	sp.sim.SetDrop(func(src, dst netip.AddrPort) bool { return true })
	ctx := context.Background()
	res, err := sp.a.conn.Ping(ctx, sp.b.node.Public())
	if err != nil {
		t.Fatal(err)
	}
	if res.Path.Kind != magicsock.PathRelay || res.Path.RelayRegion != 1 {
		t.Fatalf("first ping path = %v; want relay 1", res.Path)
	}
	sp.sim.SetDrop(nil)
	// Like weft ping --until-direct: ping until a pong comes back direct.
	var direct bool
	for range 200 {
		res, err = sp.a.conn.Ping(ctx, sp.b.node.Public())
		if err != nil {
			t.Fatal(err)
		}
		if res.Path.Kind == magicsock.PathDirect {
			direct = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !direct {
		t.Fatal("pings never came back over a direct path")
	}
	if res.Path.Endpoint != sp.globB {
		t.Fatalf("direct pong via %v; want %v", res.Path.Endpoint, sp.globB)
	}
	if st, _ := sp.a.conn.PeerStatus(sp.b.node.Public()); st.RTT <= 0 {
		t.Fatalf("status RTT = %v; want the pong's RTT", st.RTT)
	}
}

// TestSimGuessEitherStarter: between an easy and a hard NAT, only one side
// uses the peer (weft ping --until-direct: disco pings, no WireGuard
// traffic the other side would answer), and its pings come back direct
// whichever side it is. Only the easy side may start a port-guessing
// round; when the hard side is the one in use, its call-me-maybe through
// the relay is what makes the easy side start it.
func TestSimGuessEitherStarter(t *testing.T) {
	for _, starter := range []siteKind{hard, easy} {
		t.Run("starter="+starter.String(), func(t *testing.T) {
			// a is behind the hard NAT, b behind the easy one.
			sp := newSimPair(t, hard, easy, 6)
			from, to := sp.a, sp.b
			if starter == easy {
				from, to = sp.b, sp.a
			}
			ctx := context.Background()
			deadline := time.Now().Add(15 * time.Second)
			for {
				res, err := from.conn.Ping(ctx, to.node.Public())
				if err == nil && res.Path.Kind == magicsock.PathDirect {
					if res.Path.Endpoint.Addr() != to.globalAddr(sp) {
						t.Fatalf("direct pong via %v; want an address of %v", res.Path.Endpoint, to.globalAddr(sp))
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the %s side's pings never came back direct (last: %v, %v)", starter, res.Path, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// globalAddr is n's public address in sp.
func (n *tnode) globalAddr(sp *simPair) netip.Addr {
	if n == sp.a {
		return sp.globA.Addr()
	}
	return sp.globB.Addr()
}

func TestLocalEndpointsCallback(t *testing.T) {
	sim := natsim.New(1)
	got := make(chan []netip.AddrPort, 4)
	c, err := magicsock.New(magicsock.Options{
		DiscoKey:    key.NewDisco(),
		NodeKey:     key.NewNode().Public(),
		Network:     sim.NewHost(privA, sim.NewNAT(natsim.Easy, publicA)),
		OnEndpoints: func(eps []netip.AddrPort) { got <- eps },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Open(0); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := netip.AddrPortFrom(privA, c.Port())
	if eps := <-got; len(eps) != 1 || eps[0] != local {
		t.Fatalf("endpoints on open = %v; want [%v]", eps, local)
	}
	glob := netip.AddrPortFrom(publicA, 4242)
	c.SetNetReport(magicsock.NetReport{GlobalV4: glob})
	if eps := <-got; len(eps) != 2 || eps[0] != glob || eps[1] != local {
		t.Fatalf("endpoints after STUN = %v; want [%v %v]", eps, glob, local)
	}
	// The same report again changes nothing and calls back nothing.
	c.SetNetReport(magicsock.NetReport{GlobalV4: glob})
	select {
	case eps := <-got:
		t.Fatalf("callback for unchanged endpoints: %v", eps)
	default:
	}
	if eps := c.LocalEndpoints(); len(eps) != 2 {
		t.Fatalf("LocalEndpoints = %v", eps)
	}
}

// TestSimSameLAN puts both nodes behind one NAT: they must find each other
// on the private addresses (the simulated router does no hairpinning, as
// many home routers do not).
func TestSimSameLAN(t *testing.T) {
	sim := natsim.New(6)
	nat := sim.NewNAT(natsim.Easy, publicA)
	relay := newFakeRelay()
	a := newTNode(t, "a", sim.NewHost(privA, nat), relay, 6, magicsock.GuessBudget{})
	b := newTNode(t, "b", sim.NewHost(netip.MustParseAddr("192.168.1.3"), nat), relay, 7, magicsock.GuessBudget{})
	for _, n := range []*tnode{a, b} {
		n.conn.SetNetReport(magicsock.NetReport{GlobalV4: netip.AddrPortFrom(publicA, n.conn.Port())})
	}
	a.conn.SetPeers([]magicsock.Peer{peerOf(b, b.conn.LocalEndpoints(), false)})
	b.conn.SetPeers([]magicsock.Peer{peerOf(a, a.conn.LocalEndpoints(), false)})
	traffic(t, a, b)
	sp := &simPair{sim: sim, relay: relay, a: a, b: b}
	tstest.EventuallyWithin(t, 10*time.Second, "direct", sp.bothDirect)
	if got, want := a.path(b).Endpoint, netip.AddrPortFrom(netip.MustParseAddr("192.168.1.3"), b.conn.Port()); got != want {
		t.Fatalf("a→b path %v; want the LAN address %v", got, want)
	}
}

// TestSimUnknownSourceDropped checks that WireGuard-looking packets from
// an address no peer owns never reach wireguard-go.
func TestSimUnknownSourceDropped(t *testing.T) {
	sp := newSimPair(t, public, public, 8)
	traffic(t, sp.a, sp.b)
	tstest.EventuallyWithin(t, 10*time.Second, "direct", sp.bothDirect)
	stranger, err := sp.sim.NewHost(netip.MustParseAddr("198.51.100.99"), nil).ListenUDP4(0)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	// Stop the peers' own traffic, then let a stranger send.
	sp.relay.mu.Lock()
	sp.relay.down = true
	sp.relay.mu.Unlock()
	sp.sim.SetDrop(func(src, dst netip.AddrPort) bool { return src.Addr() != netip.MustParseAddr("198.51.100.99") })
	time.Sleep(50 * time.Millisecond) // let packets in flight land
	before := sp.a.received.Load()
	for range 50 {
		stranger.WriteTo([]byte("\x04\x00\x00\x00 looks like wireguard data"), sp.globA)
	}
	// Give the receive path time to read (and drop) them.
	time.Sleep(100 * time.Millisecond)
	if got := sp.a.received.Load() - before; got != 0 {
		t.Fatalf("%d packets from an unknown address reached wireguard-go", got)
	}
}

// TestCloseStopsGoroutines runs a port-guessing round (hundreds of extra
// sockets and their readers) and checks that closing both Conns leaves no
// goroutine behind.
func TestCloseStopsGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("round", func(t *testing.T) {
		sp := newSimPair(t, easy, hard, 1)
		traffic(t, sp.a, sp.b)
		tstest.EventuallyWithin(t, 15*time.Second, "direct", sp.bothDirect)
	})
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left after close (had %d):\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSimPongDoublesAsSTUN leaves out STUN: a node behind an easy NAT
// learns its public endpoint from the Src of a public peer's pong and
// publishes it.
func TestSimPongDoublesAsSTUN(t *testing.T) {
	sim := natsim.New(9)
	relay := newFakeRelay()
	a := newTNode(t, "a", sim.NewHost(privA, sim.NewNAT(natsim.Easy, publicA)), relay, 9, magicsock.GuessBudget{})
	b := newTNode(t, "b", sim.NewHost(publicB, nil), relay, 10, magicsock.GuessBudget{})
	a.conn.SetPeers([]magicsock.Peer{peerOf(b, b.conn.LocalEndpoints(), false)})
	b.conn.SetPeers([]magicsock.Peer{peerOf(a, a.conn.LocalEndpoints(), false)})
	if eps := a.conn.LocalEndpoints(); len(eps) != 1 {
		t.Fatalf("endpoints before any pong = %v; want the LAN address only", eps)
	}
	traffic(t, a, b)
	want := netip.AddrPortFrom(publicA, a.conn.Port())
	tstest.EventuallyWithin(t, 10*time.Second, "public endpoint learnt from a pong", func() bool {
		return slices.Contains(a.conn.LocalEndpoints(), want)
	})
}

// TestSimUDPBlocked blocks all UDP at one site: the pair stays on the
// relay and traffic flows there.
func TestSimUDPBlocked(t *testing.T) {
	sp := newSimPair(t, easy, easy, 12)
	sp.sim.SetDrop(func(src, dst netip.AddrPort) bool {
		return src.Addr() == publicA || dst.Addr() == publicA
	})
	if st, _ := sp.a.conn.PeerStatus(sp.b.node.Public()); st.Active {
		t.Fatal("peer active before any packet")
	}
	traffic(t, sp.a, sp.b)
	sp.flowing(t, 50, "traffic over the relay")
	time.Sleep(5 * fastTimers.Discovery)
	sp.flowing(t, 20, "more traffic over the relay")
	if !sp.bothRelay() {
		t.Fatalf("paths a→%v b→%v; want relay both ways", sp.a.path(sp.b), sp.b.path(sp.a))
	}
	if st, _ := sp.a.conn.PeerStatus(sp.b.node.Public()); !st.Active || st.Path.RelayRegion != 1 {
		t.Fatalf("status %+v; want active on relay region 1", st)
	}
}

// TestSimThreeNodeMesh joins three nodes, two behind easy NATs and one
// behind a hard NAT: every pair ends up direct (the pairs with the hard
// node by port guessing, each round with its own sockets).
func TestSimThreeNodeMesh(t *testing.T) {
	sim := natsim.New(13)
	relay := newFakeRelay()
	type site struct {
		name      string
		kind      natsim.Kind
		priv, pub netip.Addr
	}
	sites := []site{
		{"a", natsim.Easy, privA, publicA},
		{"b", natsim.Easy, privB, publicB},
		{"c", natsim.Hard, netip.MustParseAddr("192.168.3.2"), netip.MustParseAddr("203.0.113.77")},
	}
	nodes := make([]*tnode, len(sites))
	for i, s := range sites {
		nodes[i] = newTNode(t, s.name, sim.NewHost(s.priv, sim.NewNAT(s.kind, s.pub)), relay, uint64(20+i), magicsock.GuessBudget{Window: 2 * time.Second})
		nodes[i].conn.SetNetReport(magicsock.NetReport{
			MappingVariesByDestIP: s.kind == natsim.Hard,
			GlobalV4:              netip.AddrPortFrom(s.pub, nodes[i].conn.Port()),
		})
	}
	for i, n := range nodes {
		var peers []magicsock.Peer
		for j, o := range nodes {
			if i != j {
				peers = append(peers, peerOf(o, o.conn.LocalEndpoints(), sites[j].kind == natsim.Hard))
			}
		}
		n.conn.SetPeers(peers)
	}
	traffic(t, nodes[0], nodes[1])
	traffic(t, nodes[0], nodes[2])
	traffic(t, nodes[1], nodes[2])
	tstest.EventuallyWithin(t, 20*time.Second, "a full direct mesh", func() bool {
		for _, n := range nodes {
			for _, o := range nodes {
				if n != o && n.path(o).Kind != magicsock.PathDirect {
					return false
				}
			}
		}
		return true
	})
}

// TestSimDeadPathFallsBackToRelay: a direct path that stops carrying
// anything under traffic sends that traffic through the relay, packets
// keep arriving meanwhile, and the path turns direct again when the
// network does. The trust window is far longer than the test: before a
// doubtful path with no other candidate fell back, traffic went into the
// dead path until its trust ran out.
func TestSimDeadPathFallsBackToRelay(t *testing.T) {
	timers := fastTimers
	timers.TrustWindow = time.Hour
	sp := newSimPairTimers(t, easy, easy, 6, timers)
	traffic(t, sp.a, sp.b)
	tstest.EventuallyWithin(t, 10*time.Second, "direct", sp.bothDirect)
	sp.sim.SetDrop(func(src, dst netip.AddrPort) bool { return true })
	tstest.EventuallyWithin(t, 10*time.Second, "both on the relay", sp.bothRelay)
	sp.flowing(t, 20, "traffic through the relay while the direct path is dead")
	sp.sim.SetDrop(nil)
	tstest.EventuallyWithin(t, 10*time.Second, "direct again", sp.bothDirect)
	sp.flowing(t, 20, "traffic after the path came back")
}

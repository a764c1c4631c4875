package magicsock_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"weft/internal/disco"
	"weft/internal/key"
	"weft/internal/magicsock"
	"weft/internal/magicsock/natsim"
	"weft/internal/tstest"
)

// victim is a host on the internet that an attacking peer would like a
// weft node to flood.
var victim = netip.MustParseAddr("198.51.100.77")

// attackWindow is the port-guessing window in the attack tests: short, so
// a round that should not have started is over, and counted, quickly.
const attackWindow = 300 * time.Millisecond

// attackRig is one weft node in the simulator and a peer that turns
// against it: a modified node whose disco messages are sealed with its
// real disco key and arrive through the relay, as the relay would deliver
// them. The rig counts the bytes of the attacker's messages and the
// bytes the node sends to each address.
type attackRig struct {
	t      *testing.T
	sim    *natsim.Network
	n      *tnode
	node   key.NodePrivate
	shared *disco.SharedKey

	mu     sync.Mutex
	in     int                     // bytes of the attacker's sealed messages
	sentTo map[netip.Addr][2]int   // address → packets, bytes sent there
	socks  map[netip.AddrPort]bool // sockets of the node that sent anything
	byDst  map[netip.AddrPort]int  // destination → bytes sent there
	peer   magicsock.Peer          // the attacker as the node's map lists it
}

// newAttackRig makes the node (behind a hard NAT if hard, else an easy
// one) with timers, and gives it the attacker as its one peer, with
// attackerEps as the attacker's endpoints in the map.
func newAttackRig(t *testing.T, hard, attackerHard bool, attackerEps []netip.AddrPort, timers magicsock.Timers) *attackRig {
	t.Helper()
	r := &attackRig{
		t: t, sim: natsim.New(7), node: key.NewNode(),
		sentTo: map[netip.Addr][2]int{}, socks: map[netip.AddrPort]bool{}, byDst: map[netip.AddrPort]int{},
	}
	kind := natsim.Easy
	if hard {
		kind = natsim.Hard
	}
	host := r.sim.NewHost(privA, r.sim.NewNAT(kind, publicA))
	r.sim.SetTap(func(src, dst netip.AddrPort, size int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		c := r.sentTo[dst.Addr()]
		c[0]++
		c[1] += size
		r.sentTo[dst.Addr()] = c
		r.socks[src] = true
		r.byDst[dst] += size
	})
	relay := newFakeRelay()
	r.n = newTNodeTimers(t, "node", host, relay, 1, magicsock.GuessBudget{Window: attackWindow}, timers)
	r.n.conn.SetNetReport(magicsock.NetReport{MappingVariesByDestIP: hard, GlobalV4: netip.AddrPortFrom(publicA, r.n.conn.Port())})
	attackerDisco := key.NewDisco()
	r.n.conn.SetPeers([]magicsock.Peer{{
		NodeKey: r.node.Public(), DiscoKey: attackerDisco.Public(),
		Endpoints: attackerEps, HomeRegion: 1, HardNAT: attackerHard,
	}})
	r.shared = disco.NewSharedKey(attackerDisco, r.n.disco.Public())
	r.peer = magicsock.Peer{NodeKey: r.node.Public(), DiscoKey: attackerDisco.Public(), Endpoints: attackerEps, HomeRegion: 1, HardNAT: attackerHard}
	return r
}

// send delivers m from the attacker through the relay.
func (r *attackRig) send(m disco.Message) {
	pkt := r.shared.Seal(m)
	r.mu.Lock()
	r.in += len(pkt)
	r.mu.Unlock()
	r.n.conn.InjectRelayed(1, r.node.Public(), pkt)
}

// sent returns the packets and bytes the node sent to a.
func (r *attackRig) sent(a netip.Addr) (pkts, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.sentTo[a]
	return c[0], c[1]
}

// factor is the bytes the node sent to a per byte the attacker sent it.
func (r *attackRig) factor(a netip.Addr) float64 {
	_, out := r.sent(a)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.in == 0 {
		return 0
	}
	return float64(out) / float64(r.in)
}

// settle waits out a port-guessing round (the node's window and then
// some), so whatever a round would send has been sent. It runs in a
// synctest bubble (bubbled): the window passes on the bubble's fake
// clock, and Wait returns once every goroutine of the node is idle. On
// the wall clock a loaded machine could take longer than the window just
// to open a round's 256 sockets and send their pings, and a count taken
// after a fixed sleep saw half a round (the other half then looked like
// a second round the cooldown should have refused).
func settle() {
	time.Sleep(3 * attackWindow)
	synctest.Wait()
}

// bubbled runs a test in its own synctest bubble, for tests that settle.
func bubbled(f func(t *testing.T)) func(t *testing.T) {
	return func(t *testing.T) { synctest.Test(t, f) }
}

// TestDiscoUnsolicitedHardGuessIgnored: a port-guess from the "hard side"
// makes the easy side probe up to 1,024 ports of the address it names.
// The node acts on one only inside a round it started itself; otherwise a
// 105-byte message would buy an attacker ~150 KB of pings at any host.
func TestDiscoUnsolicitedHardGuessIgnored(t *testing.T) {
	attackerPublic := netip.MustParseAddrPort("203.0.113.1:41000")
	for _, target := range []netip.Addr{victim, attackerPublic.Addr()} {
		t.Run(target.String(), bubbled(func(t *testing.T) {
			r := newAttackRig(t, false, true, []netip.AddrPort{attackerPublic}, fastTimers)
			r.send(&disco.PortGuess{Hard: true, Public: netip.AddrPortFrom(target, 0), Sockets: 256, Probes: 1024, WindowMS: 3000})
			settle()
			if pkts, bytes := r.sent(target); pkts != 0 {
				t.Fatalf("an unsolicited hard-side port-guess made the node send %d packets (%d bytes, %.0f× the message) to %v",
					pkts, bytes, r.factor(target), target)
			}
		}))
	}
}

// TestDiscoGuessRequestChecked: the hard side of a round opens up to 256
// sockets and pings the easy side's endpoint from each. It does that only
// while it is behind a hard NAT, for an endpoint the peer publishes in
// the map (never any address a message names), at most once per
// cooldown (Timers.Reprobe) per peer.
func TestDiscoGuessRequestChecked(t *testing.T) {
	attackerPublic := netip.MustParseAddrPort("203.0.113.1:41000")
	for _, tt := range []struct {
		name   string
		hard   bool
		public netip.AddrPort
	}{
		{"victim not in the map", true, netip.AddrPortFrom(victim, 1234)},
		{"loopback", true, netip.MustParseAddrPort("127.0.0.1:1234")},
		{"node not behind a hard NAT", false, attackerPublic},
	} {
		t.Run(tt.name, bubbled(func(t *testing.T) {
			r := newAttackRig(t, tt.hard, false, []netip.AddrPort{attackerPublic}, fastTimers)
			r.send(&disco.PortGuess{Public: tt.public, Sockets: 256, Probes: 1024, WindowMS: 3000})
			settle()
			if pkts, _ := r.sent(tt.public.Addr()); pkts != 0 {
				t.Fatalf("the port-guess request made the node send %d packets to %v (%.0f× the message)", pkts, tt.public, r.factor(tt.public.Addr()))
			}
		}))
	}
	// A request can arrive through the relay before the map update that
	// lists its endpoint (they travel different ways): it is held, and
	// the round starts once the map lists the endpoint, not before.
	t.Run("held until the map lists the endpoint", bubbled(func(t *testing.T) {
		moved := netip.MustParseAddrPort("203.0.113.1:42000")
		r := newAttackRig(t, true, false, []netip.AddrPort{attackerPublic}, fastTimers)
		r.send(&disco.PortGuess{Public: moved, Sockets: 256, Probes: 1024, WindowMS: 3000})
		settle()
		if pkts, _ := r.sent(moved.Addr()); pkts != 0 {
			t.Fatalf("a request for an endpoint not in the map sent %d packets at once", pkts)
		}
		r.peer.Endpoints = []netip.AddrPort{moved}
		r.n.conn.SetPeers([]magicsock.Peer{r.peer})
		settle()
		if pkts, _ := r.sent(moved.Addr()); pkts == 0 {
			t.Fatal("the held request started no round once the map listed its endpoint")
		}
	}))
	t.Run("cooldown", bubbled(func(t *testing.T) {
		timers := fastTimers
		timers.Reprobe = time.Hour // the cooldown cannot pass during the test
		r := newAttackRig(t, true, false, []netip.AddrPort{attackerPublic}, timers)
		req := &disco.PortGuess{Public: attackerPublic, Sockets: 256, Probes: 1024, WindowMS: 3000}
		r.send(req)
		settle()
		first, _ := r.sent(attackerPublic.Addr())
		if first == 0 {
			t.Fatal("a well-formed request from a peer behind an easy NAT started no round: nothing to check")
		}
		r.send(req)
		settle()
		if all, _ := r.sent(attackerPublic.Addr()); all != first {
			t.Fatalf("a second request within the cooldown sent %d more packets (the first round sent %d)", all-first, first)
		}
	}))
}

// TestDiscoHardPeerCallStartsOneRound: a call-me-maybe from a peer the map
// says is behind a hard NAT makes the node, behind an easy one, start a
// round itself (a hard side that starts a connection has no other way to
// get one). The round stays the node's own: the peer's answer is acted
// on inside it, once per cooldown, however many calls and answers follow,
// and its probes go only to the peer's address from the map.
func TestDiscoHardPeerCallStartsOneRound(t *testing.T) {
	synctest.Test(t, testDiscoHardPeerCallStartsOneRound)
}

func testDiscoHardPeerCallStartsOneRound(t *testing.T) {
	attackerPublic := netip.MustParseAddrPort("203.0.113.1:41000")
	timers := fastTimers
	timers.Reprobe = time.Hour // the cooldown cannot pass during the test
	r := newAttackRig(t, false, true, []netip.AddrPort{attackerPublic}, timers)
	ready := func(a netip.Addr) *disco.PortGuess {
		return &disco.PortGuess{Hard: true, Public: netip.AddrPortFrom(a, 0), Sockets: 256, Probes: 1024, WindowMS: 3000}
	}
	r.send(&disco.CallMeMaybe{})
	time.Sleep(5 * fastTimers.Tick) // the round starts on the call
	r.send(ready(attackerPublic.Addr()))
	settle()
	first, _ := r.sent(attackerPublic.Addr())
	if first == 0 {
		t.Fatal("a hard peer's call-me-maybe started no round: nothing to check")
	}
	for range 50 {
		r.send(&disco.CallMeMaybe{})
		r.send(ready(attackerPublic.Addr()))
		r.send(ready(victim))
	}
	settle()
	if all, _ := r.sent(attackerPublic.Addr()); all != first {
		t.Fatalf("50 more calls and answers within the cooldown sent %d more probes (the round sent %d)", all-first, first)
	}
	if pkts, _ := r.sent(victim); pkts != 0 {
		t.Fatalf("an answer naming an address outside the map made the node send %d packets there", pkts)
	}
}

// TestDiscoCallMeMaybeThrottled: a call-me-maybe makes the node ping the
// endpoints it names (simultaneous open). A flood of them must not turn
// into a flood of pings: only the named endpoints are pinged, and the
// pings sent in answer to a peer are limited per candidate and per peer.
func TestDiscoCallMeMaybeThrottled(t *testing.T) {
	timers := fastTimers
	// The per-peer budget refills per discovery interval; an hour makes
	// the refill during the test nil, so the bound holds on any machine.
	timers.Discovery = time.Hour
	const messages = 50
	for _, tt := range []struct {
		name string
		eps  func(i int) []netip.AddrPort
	}{
		{"one new endpoint each", func(i int) []netip.AddrPort {
			return []netip.AddrPort{netip.AddrPortFrom(victim, uint16(2000+i))}
		}},
		{"48 new endpoints each", func(i int) []netip.AddrPort {
			var eps []netip.AddrPort
			for j := range 48 {
				eps = append(eps, netip.AddrPortFrom(victim, uint16(2000+48*i+j)))
			}
			return eps
		}},
		{"the same endpoint each", func(i int) []netip.AddrPort {
			return []netip.AddrPort{netip.AddrPortFrom(victim, 2000)}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newAttackRig(t, false, false, nil, timers)
			for i := range messages {
				r.send(&disco.CallMeMaybe{Endpoints: tt.eps(i)})
			}
			pkts, bytes := r.sent(victim)
			t.Logf("%d call-me-maybes → %d pings (%d bytes) to %v: %.2f× the attacker's bytes", messages, pkts, bytes, victim, r.factor(victim))
			// The per-peer budget: one full set of candidates.
			if pkts > maxCandidates {
				t.Fatalf("%d call-me-maybes made the node send %d pings to %v; want at most %d", messages, pkts, victim, maxCandidates)
			}
		})
	}
}

// maxCandidates mirrors magicsock's bound on a peer's candidates, which
// is also its budget of pings sent in answer to that peer.
const maxCandidates = 32

// TestDiscoTargetsMustBeGlobalUnicast: endpoints a peer names in a
// call-me-maybe are pinged only if they are global unicast (no loopback,
// link-local, multicast, unspecified or broadcast address, no cloud
// metadata address) and not on the node's own LAN, unless the peer's map
// endpoints put it on that LAN too.
func TestDiscoTargetsMustBeGlobalUnicast(t *testing.T) {
	bad := []string{
		"127.0.0.1:22", "0.0.0.0:22", "255.255.255.255:22", "224.0.0.1:22", "169.254.169.254:80",
		"169.254.1.1:22", "[::1]:22", "[fe80::1]:22", "[ff02::1]:22", "[::]:22",
		"192.168.1.1:80", // the node's own LAN (it is 192.168.1.2)
	}
	good := netip.AddrPortFrom(victim, 3000)
	t.Run("refused", func(t *testing.T) {
		r := newAttackRig(t, false, false, []netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:41000")}, fastTimers)
		eps := []netip.AddrPort{good}
		for _, s := range bad {
			eps = append(eps, netip.MustParseAddrPort(s))
		}
		r.send(&disco.CallMeMaybe{Endpoints: eps})
		tstest.EventuallyWithin(t, 5*time.Second, "the ping to the public endpoint", func() bool { p, _ := r.sent(good.Addr()); return p > 0 })
		for _, s := range bad {
			a := netip.MustParseAddrPort(s).Addr()
			if p, _ := r.sent(a); p != 0 {
				t.Errorf("a call-me-maybe made the node send %d packets to %v", p, a)
			}
		}
	})
	t.Run("LAN shared with the peer", func(t *testing.T) {
		lanPeer := netip.MustParseAddrPort("192.168.1.9:41000")
		r := newAttackRig(t, false, false, []netip.AddrPort{lanPeer}, fastTimers)
		other := netip.MustParseAddrPort("192.168.1.10:41000")
		r.send(&disco.CallMeMaybe{Endpoints: []netip.AddrPort{other}})
		tstest.EventuallyWithin(t, 5*time.Second, "a ping to the peer's other LAN endpoint", func() bool { p, _ := r.sent(other.Addr()); return p > 0 })
	})
}

// TestDiscoAmplification measures, for each disco message a peer can
// send, the bytes the node then sends toward the addresses the message
// names per byte of the message (sealed disco payloads both ways, no
// IP/UDP or relay framing), in the worst case the checks still allow.
// docs/disco.md quotes the figures; the bounds here are those figures,
// so a change to the budgets that raises them fails until the doc is
// updated.
func TestDiscoAmplification(t *testing.T) { synctest.Test(t, testDiscoAmplification) }

func testDiscoAmplification(t *testing.T) {
	attackerEP := netip.AddrPortFrom(victim, 41000)
	type result struct {
		name   string
		factor float64
		max    float64
	}
	var results []result
	// exclude is a destination whose packets are the node's own
	// discovery, not caused by the message.
	measure := func(name string, max float64, run func(r *attackRig) bool, hard, attackerHard bool, exclude netip.AddrPort) {
		timers := fastTimers
		timers.Discovery = time.Hour // no refill of the answer budget during the test
		r := newAttackRig(t, hard, attackerHard, []netip.AddrPort{attackerEP}, timers)
		if !run(r) {
			t.Errorf("%s: the attack sent nothing, so it measures nothing", name)
		}
		r.mu.Lock()
		out := 0
		for dst, b := range r.byDst {
			if dst.Addr() == victim && dst != exclude {
				out += b
			}
		}
		f := float64(out) / float64(r.in)
		r.mu.Unlock()
		results = append(results, result{name, f, max})
	}
	measure("call-me-maybe, 1 new endpoint", 1.3, func(r *attackRig) bool {
		r.send(&disco.CallMeMaybe{Endpoints: []netip.AddrPort{netip.AddrPortFrom(victim, 2000)}})
		p, _ := r.sent(victim)
		return p > 0
	}, false, false, netip.AddrPort{})
	measure("call-me-maybe, 48 new endpoints", 4.5, func(r *attackRig) bool {
		var eps []netip.AddrPort
		for j := range 48 {
			eps = append(eps, netip.AddrPortFrom(victim, uint16(2000+j)))
		}
		r.send(&disco.CallMeMaybe{Endpoints: eps})
		p, _ := r.sent(victim)
		return p > 0
	}, false, false, netip.AddrPort{})
	measure("port-guess request (hard side, once per cooldown)", 310, func(r *attackRig) bool {
		r.send(&disco.PortGuess{Public: netip.AddrPortFrom(victim, 41001), Sockets: 65535, Probes: 65535, WindowMS: 65535})
		// Not a map endpoint: refused. The one the map lists:
		r.mu.Lock()
		r.in = 0
		r.mu.Unlock()
		r.send(&disco.PortGuess{Public: attackerEP, Sockets: 65535, Probes: 65535, WindowMS: 65535})
		settle()
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.byDst[attackerEP] > 0
	}, true, false, netip.AddrPort{})
	measure("port-guess ready (easy side, own round, once per cooldown)", 1220, func(r *attackRig) bool {
		// A packet to the peer makes it in use; discovery then starts
		// the round (the request goes to the attacker), and the
		// attacker answers as the hard side, naming its map address.
		ep, err := r.n.conn.ParseEndpoint(r.node.Public().String())
		if err != nil {
			t.Fatal(err)
		}
		r.n.conn.Send([][]byte{[]byte("data")}, ep)
		time.Sleep(10 * fastTimers.Tick)
		r.send(&disco.PortGuess{Hard: true, Public: netip.AddrPortFrom(victim, 0), Sockets: 65535, Probes: 65535, WindowMS: 65535})
		settle()
		p, _ := r.sent(victim)
		return p > 1
	}, false, true, attackerEP)
	for _, res := range results {
		t.Logf("%-58s %7.1f×", res.name, res.factor)
		if res.factor > res.max {
			t.Errorf("%s: amplification %.1f×, above the %.1f× docs/disco.md gives", res.name, res.factor, res.max)
		}
	}
}

// TestDiscoKeyCopiedByAnotherPeer: a peer that publishes another peer's
// disco key (it cannot hold the private half, so it gains nothing but
// confusion) must not take that peer's place in the Conn's disco index,
// nor remove it when it switches back to a key of its own: the victim's
// pings and pongs, direct and through the relay, keep being answered and
// recognised, whatever order the map lists the two in.
func TestDiscoKeyCopiedByAnotherPeer(t *testing.T) {
	for _, attackerFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("attacker listed first=%v", attackerFirst), func(t *testing.T) {
			sp := newSimPair(t, easy, easy, 3)
			traffic(t, sp.a, sp.b)
			tstest.EventuallyWithin(t, 10*time.Second, "both paths direct", sp.bothDirect)
			victimPeer := peerOf(sp.b, sp.b.conn.LocalEndpoints(), false)
			attacker := magicsock.Peer{NodeKey: key.NewNode().Public(), DiscoKey: sp.b.disco.Public(), HomeRegion: 1,
				Endpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.99:41641")}}
			set := func(att magicsock.Peer) {
				if attackerFirst {
					sp.a.conn.SetPeers([]magicsock.Peer{att, victimPeer})
				} else {
					sp.a.conn.SetPeers([]magicsock.Peer{victimPeer, att})
				}
			}
			pingB := func(what string) {
				t.Helper()
				var last error
				ok := false
				for range 5 {
					ctx, cancel := context.WithTimeout(context.Background(), fastTimers.PingTimeout)
					_, err := sp.a.conn.Ping(ctx, sp.b.node.Public())
					cancel()
					if err == nil {
						ok = true
						break
					}
					last = err
				}
				if !ok {
					t.Fatalf("%s: a's pings to b get no pong: %v", what, last)
				}
			}
			set(attacker)
			pingB("while another peer claims b's disco key")
			attacker.DiscoKey = key.NewDisco().Public()
			set(attacker)
			pingB("after the other peer switched to a key of its own")
			// b's own pings through a's Conn are answered too: its
			// path to a stays direct past several trust windows.
			time.Sleep(3 * fastTimers.TrustWindow)
			if !sp.bothDirect() {
				t.Fatalf("paths a→%v b→%v; want both direct", sp.a.path(sp.b), sp.b.path(sp.a))
			}
		})
	}
}

package magicsock

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"weft/internal/disco"
	"weft/internal/key"
)

// TestBestPathHysteresis drives noteDirectPongLocked with pongs of chosen
// RTTs: a path is replaced only by a clearly better one (under ¾ of its
// RTT) while it is trusted, and by anything once its trust has run out.
func TestBestPathHysteresis(t *testing.T) {
	c, err := New(Options{DiscoKey: key.NewDisco(), NodeKey: key.NewNode().Public()})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort("198.51.100.1:1000")
	b := netip.MustParseAddrPort("203.0.113.1:2000")
	t0 := time.Now()
	ms := time.Millisecond
	steps := []struct {
		name string
		to   netip.AddrPort
		rtt  time.Duration
		at   time.Duration // after t0
		want netip.AddrPort
	}{
		{"first pong wins", a, 10 * ms, 0, a},
		{"slightly better stays", b, 9 * ms, 100 * ms, a},
		{"worse stays", b, 20 * ms, 200 * ms, a},
		{"clearly better switches", b, 5 * ms, 300 * ms, b},
		{"old path better again but within margin", a, 4 * ms, 400 * ms, b},
		{"current path expired: any pong switches", a, 50 * ms, 400*ms + c.timers.TrustWindow + ms, a},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := newPeer(key.NewNode().Public())
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now := t0.Add(s.at)
			sp := &sentPing{to: s.to, at: now.Add(-s.rtt)}
			p.noteDirectPongLocked(c, sp, now)
			if p.best == nil || p.best.addr != s.want {
				t.Fatalf("best = %+v; want %v", p.best, s.want)
			}
			if pa := p.path.Load(); pa == nil || pa.addr != s.want {
				t.Fatalf("published path = %+v; want %v", pa, s.want)
			}
		})
	}
}

// pong is a pong from an address after a round trip.
type pong struct {
	to  netip.AddrPort
	rtt time.Duration
}

// TestBestPathAcrossFamilies: between a peer's IPv4 and IPv6 addresses
// the measured pong latency decides, with the same margin as within one
// family; neither family is preferred for itself.
func TestBestPathAcrossFamilies(t *testing.T) {
	c, err := New(Options{DiscoKey: key.NewDisco(), NodeKey: key.NewNode().Public()})
	if err != nil {
		t.Fatal(err)
	}
	v4 := netip.MustParseAddrPort("203.0.113.21:41641")
	v6 := netip.MustParseAddrPort("[2001:db8:1::10]:50000")
	t0 := time.Now()
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		pongs []pong
		want  netip.AddrPort
	}{
		{"IPv6 clearly faster replaces IPv4", []pong{{v4, 20 * ms}, {v6, 10 * ms}}, v6},
		{"IPv4 clearly faster replaces IPv6", []pong{{v6, 20 * ms}, {v4, 10 * ms}}, v4},
		{"IPv6 about as fast keeps IPv4", []pong{{v4, 10 * ms}, {v6, 9 * ms}}, v4},
		{"IPv4 about as fast keeps IPv6", []pong{{v6, 10 * ms}, {v4, 9 * ms}}, v6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.mu.Lock()
			defer c.mu.Unlock()
			p := newPeer(key.NewNode().Public())
			for i, pg := range tc.pongs {
				now := t0.Add(time.Duration(i) * 100 * ms)
				p.noteDirectPongLocked(c, &sentPing{to: pg.to, at: now.Add(-pg.rtt)}, now)
			}
			if pa := p.path.Load(); p.best == nil || p.best.addr != tc.want || pa == nil || pa.addr != tc.want {
				t.Errorf("best = %+v, path %+v; want %v", p.best, pa, tc.want)
			}
		})
	}
}

// TestPingHandling seals pings as a peer would and checks what the Conn
// sends back: a pong (and, from a new address, a ping of its own) for a
// genuine ping, nothing for one naming another node or relayed by the
// wrong node.
func TestPingHandling(t *testing.T) {
	self, peerDisco, peerNode, other := key.NewDisco(), key.NewDisco(), key.NewNode(), key.NewNode()
	from := netip.MustParseAddrPort("203.0.113.5:999")
	tests := []struct {
		name      string
		nodeKey   key.NodePublic
		src       source
		wantPongs int
		wantPings int
	}{
		{"direct", peerNode.Public(), source{addr: from}, 1, 1},
		{"relayed", peerNode.Public(), source{relay: true, region: 1, nodeKey: peerNode.Public()}, 1, 0},
		{"wrong node key", other.Public(), source{addr: from}, 0, 0},
		{"relayed by another node", peerNode.Public(), source{relay: true, region: 1, nodeKey: other.Public()}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			c, err := New(Options{DiscoKey: self, NodeKey: key.NewNode().Public(), Relay: rec, Network: rec})
			if err != nil {
				t.Fatal(err)
			}
			c.SetPeers([]Peer{{NodeKey: peerNode.Public(), DiscoKey: peerDisco.Public(), HomeRegion: 1}})
			tx := disco.NewTxID()
			peerSide := disco.NewSharedKey(peerDisco, self.Public())
			c.handleDisco(peerSide.Seal(&disco.Ping{TxID: tx, NodeKey: tt.nodeKey}), tt.src)
			pongs, pings := 0, 0
			for _, pkt := range rec.sent {
				m, err := peerSide.Open(pkt)
				if err != nil {
					t.Fatalf("reply does not open: %v", err)
				}
				switch m := m.(type) {
				case *disco.Pong:
					pongs++
					if m.TxID != tx || m.Src != tt.src.addr {
						t.Errorf("pong %+v; want txid %x src %v", m, tx, tt.src.addr)
					}
				case *disco.Ping:
					pings++
				}
			}
			if pongs != tt.wantPongs || pings != tt.wantPings {
				t.Fatalf("sent %d pongs, %d pings; want %d, %d", pongs, pings, tt.wantPongs, tt.wantPings)
			}
		})
	}
}

// TestPeerRemovedAndReadded checks that the endpoint wireguard-go holds
// stays valid across a peer leaving and rejoining the map.
func TestPeerRemovedAndReadded(t *testing.T) {
	rec := &recorder{}
	c, err := New(Options{DiscoKey: key.NewDisco(), NodeKey: key.NewNode().Public(), Relay: rec, Network: rec})
	if err != nil {
		t.Fatal(err)
	}
	pk := key.NewNode().Public()
	peer := Peer{NodeKey: pk, DiscoKey: key.NewDisco().Public(), HomeRegion: 1}
	c.SetPeers([]Peer{peer})
	ep, err := c.ParseEndpoint(pk.String())
	if err != nil {
		t.Fatal(err)
	}
	pkt := [][]byte{[]byte("wireguard data")}
	if err := c.Send(pkt, ep); err != nil {
		t.Fatalf("send to a mapped peer: %v", err)
	}
	c.SetPeers(nil)
	if err := c.Send(pkt, ep); !errors.Is(err, ErrNoPath) {
		t.Fatalf("send to a removed peer: %v; want ErrNoPath", err)
	}
	c.SetPeers([]Peer{peer})
	ep2, _ := c.ParseEndpoint(pk.String())
	if ep2 != ep {
		t.Fatal("re-added peer got a new endpoint object")
	}
	if err := c.Send(pkt, ep); err != nil {
		t.Fatalf("send through the old endpoint after re-adding: %v", err)
	}
	if _, err := c.ParseEndpoint("203.0.113.1:41641"); err == nil {
		t.Fatal("ParseEndpoint accepted an address; want node keys only")
	}
}

// TestPingBackAfterOwnPing: our ping to a peer's endpoint died in its NAT;
// the peer's ping then arrives from that endpoint. We must ping back at
// once, not wait for the next discovery round.
func TestPingBackAfterOwnPing(t *testing.T) {
	self, peerDisco, peerNode := key.NewDisco(), key.NewDisco(), key.NewNode()
	ep := netip.MustParseAddrPort("203.0.113.5:999")
	rec := &recorder{}
	c, err := New(Options{DiscoKey: self, NodeKey: key.NewNode().Public(), Relay: rec, Network: rec})
	if err != nil {
		t.Fatal(err)
	}
	c.SetPeers([]Peer{{NodeKey: peerNode.Public(), DiscoKey: peerDisco.Public(), HomeRegion: 1, Endpoints: []netip.AddrPort{ep}}})
	c.mu.Lock()
	p := c.peers[peerNode.Public()]
	p.pingLocked(c, p.cands[ep], time.Now().Add(-3*pingBackGap)) // a relay round trip ago
	c.unlock()
	rec.sent = nil
	peerSide := disco.NewSharedKey(peerDisco, self.Public())
	c.handleDisco(peerSide.Seal(&disco.Ping{TxID: disco.NewTxID(), NodeKey: peerNode.Public()}), source{addr: ep})
	var pings int
	for _, pkt := range rec.sent {
		if m, err := peerSide.Open(pkt); err == nil {
			if _, ok := m.(*disco.Ping); ok {
				pings++
			}
		}
	}
	if pings != 1 {
		t.Fatalf("sent %d pings back; want 1", pings)
	}
}

// TestNodeKeyRotationKeepsDisco: a peer that rotates its node key (`weft
// up --rotate-key`) keeps its disco key, and its map entry moves to the
// new node key in one SetPeers. Dropping the old entry must not drop the
// disco key the new entry now holds, or the peer's pings go unanswered
// until its daemon restarts.
func TestNodeKeyRotationKeepsDisco(t *testing.T) {
	self, peerDisco, oldNode, newNode := key.NewDisco(), key.NewDisco(), key.NewNode(), key.NewNode()
	rec := &recorder{}
	c, err := New(Options{DiscoKey: self, NodeKey: key.NewNode().Public(), Relay: rec, Network: rec})
	if err != nil {
		t.Fatal(err)
	}
	c.SetPeers([]Peer{{NodeKey: oldNode.Public(), DiscoKey: peerDisco.Public(), HomeRegion: 1}})
	c.SetPeers([]Peer{{NodeKey: newNode.Public(), DiscoKey: peerDisco.Public(), HomeRegion: 1}})
	peerSide := disco.NewSharedKey(peerDisco, self.Public())
	tx := disco.NewTxID()
	c.handleDisco(peerSide.Seal(&disco.Ping{TxID: tx, NodeKey: newNode.Public()}), source{addr: netip.MustParseAddrPort("203.0.113.5:999")})
	for _, pkt := range rec.sent {
		if m, err := peerSide.Open(pkt); err == nil {
			if pong, ok := m.(*disco.Pong); ok && pong.TxID == tx {
				return
			}
		}
	}
	t.Fatalf("no pong to the rotated peer's ping (%d packets sent)", len(rec.sent))
}

// TestIdlePeerProbedWhileNoRelay: a peer nothing is sent to is left alone
// while a relay is reachable; once none is, its known endpoints are pinged
// at once and then at doubling intervals, and the pacing starts over when
// a relay is back.
func TestIdlePeerProbedWhileNoRelay(t *testing.T) {
	self, peerDisco, peerNode := key.NewDisco(), key.NewDisco(), key.NewNode().Public()
	rec := &recorder{}
	c, err := New(Options{DiscoKey: self, NodeKey: key.NewNode().Public(), Relay: rec, Network: rec})
	if err != nil {
		t.Fatal(err)
	}
	ep := netip.MustParseAddrPort("203.0.113.5:41641")
	c.SetPeers([]Peer{{NodeKey: peerNode, DiscoKey: peerDisco.Public(), Endpoints: []netip.AddrPort{ep}, HomeRegion: 1}})
	peerSide := disco.NewSharedKey(peerDisco, self.Public())
	pings := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, pkt := range rec.sent {
			if m, err := peerSide.Open(pkt); err == nil {
				if _, ok := m.(*disco.Ping); ok {
					n++
				}
			}
		}
		return n
	}
	t0 := time.Now()
	ms := time.Millisecond
	steps := []struct {
		name    string
		noRelay bool
		at      time.Duration
		want    int // pings sent so far
	}{
		{"relay reachable: an idle peer is left alone", false, 0, 0},
		{"relay lost: probed at once", true, 0, 1},
		{"within the first second: nothing", true, 500 * ms, 1},
		{"after a second: probed again", true, 1000 * ms, 2},
		{"interval doubled: nothing at 2.5 s", true, 2500 * ms, 2},
		{"probed at 3 s", true, 3000 * ms, 3},
		{"relay back: nothing, pacing reset", false, 3500 * ms, 3},
		{"relay lost again: probed at once", true, 3600 * ms, 4},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			c.noRelay.Store(s.noRelay)
			c.mu.Lock()
			c.peers[peerNode].maintainLocked(c, t0.Add(s.at))
			c.unlock()
			if got := pings(); got != s.want {
				t.Fatalf("%d pings sent so far, want %d", got, s.want)
			}
		})
	}
}

// TestInjectedQueueBoundedAndCounted: relayed packets wait in a queue of
// fixed size for wireguard-go; what does not fit is dropped and counted,
// never queued beyond it.
func TestInjectedQueueBoundedAndCounted(t *testing.T) {
	c, err := New(Options{DiscoKey: key.NewDisco(), NodeKey: key.NewNode().Public()})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	p := c.peerLocked(key.NewNode().Public())
	c.mu.Unlock()
	size := cap(c.injected)
	for range size + 10 {
		c.inject(p, []byte{4, 0, 0, 0})
	}
	if len(c.injected) != size || c.InjectDrops() != 10 {
		t.Errorf("queued %d, dropped %d; want %d queued and 10 dropped", len(c.injected), c.InjectDrops(), size)
	}
}

package magicsock

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/disco"
	"weft/internal/key"
	"weft/internal/wire"
)

// Peer is what the Conn needs to know of one peer from the peer map.
type Peer struct {
	NodeKey    key.NodePublic
	DiscoKey   key.DiscoPublic
	Endpoints  []netip.AddrPort
	HomeRegion int
	// HardNAT is the peer's report that its NAT mapping varies by
	// destination; with an easy NAT on our side it calls for port guessing.
	HardNAT bool
}

// PeerFromNode takes what the Conn needs from a peer-map entry.
func PeerFromNode(n *wire.Node) Peer {
	p := Peer{
		NodeKey:    n.NodeKey,
		DiscoKey:   n.DiscoKey,
		Endpoints:  n.Endpoints,
		HomeRegion: n.HomeRegion,
	}
	if n.Hostinfo != nil && n.Hostinfo.NetInfo != nil {
		p.HardNAT = n.Hostinfo.NetInfo.MappingVariesByDestIP
	}
	return p
}

// peer is the path state of one peer. Fields marked atomic are read on the
// packet path without a lock; the rest are guarded by Conn.mu.
type peer struct {
	key key.NodePublic
	ep  *peerEndpoint

	path       atomic.Pointer[path] // nil: relay
	homeRegion atomic.Int64
	lastSend   atomic.Int64 // unix nanos of the last WireGuard send
	// heard is when a WireGuard packet last came in from the path's
	// address (unix nanos): a path we keep sending on without hearing
	// from is probed at once (silentLocked).
	heard atomic.Int64
	// relayedIn is when a WireGuard packet last came from the peer
	// through a relay while we had a direct path (unix nanos): the peer
	// fell back, so our path may be dead too and is probed at once.
	relayedIn     atomic.Int64
	nextDiscovery atomic.Int64 // unix nanos; a send past it wakes the loop
	removed       atomic.Bool

	// Guarded by Conn.mu.
	disco         key.DiscoPublic
	shared        *disco.SharedKey
	hardNAT       bool
	cands         map[netip.AddrPort]*candidate
	pings         map[disco.TxID]*sentPing
	best          *candidate
	lastDiscovery time.Time
	// idleProbeAt and idleBackoff pace probing an idle peer while no
	// relay is reachable (probeIdleLocked).
	idleProbeAt   time.Time
	idleBackoff   time.Duration
	guess         *guessRound
	guessNotAfter time.Time // no new round before this
	// heldGuess is a request to take the hard side of a round aimed at
	// an endpoint our map did not list yet (the peer's map update and
	// its request race: one comes from control, the other through the
	// relay). It is acted on if the next map lists the endpoint within
	// heldGuessFor, and dropped otherwise.
	heldGuess *heldGuess
	// calledAt is when the peer's last call-me-maybe came through the
	// relay: a hard-NAT peer that calls wants a round we, the easy side,
	// must start (answerCallLocked).
	calledAt time.Time
	// fellBack is when traffic last fell back to the relay because the
	// direct path stopped answering.
	fellBack time.Time
	socks    []*extraSock // extra sockets of this peer (guessing, then the winner)
	// mapEps are the peer's endpoints as the last map gave them. Only
	// these, not addresses from the peer's messages, may aim a
	// port-guessing round or vouch for a target on our LAN.
	mapEps []netip.AddrPort
	// answerTokens are the pings left to send in answer to the peer's
	// messages, as of answerAt (takeAnswerPingLocked).
	answerTokens float64
	answerAt     time.Time
}

// path is an immutable snapshot of where Send puts a peer's packets.
type path struct {
	addr    netip.AddrPort
	innerEP conn.Endpoint // cached main-socket endpoint for addr
	sock    *extraSock    // non-nil: send from this extra socket
}

// candidate is one direct address the peer might be reached at.
type candidate struct {
	addr     netip.AddrPort
	sock     *extraSock // the socket that reaches it; nil = main
	origin   string     // "map", "call-me-maybe", "learned", "guess"
	lastPing time.Time
	lastPong time.Time
	// unanswered is when the first ping since the last pong went out;
	// zero while every ping has been answered.
	unanswered time.Time
	rtt        time.Duration
	probe      probe // path MTU discovery (pmtu.go)
}

// sentPing is a ping awaiting its pong.
type sentPing struct {
	to     netip.AddrPort
	sock   *extraSock
	relay  bool
	region int
	at     time.Time
	waiter chan PingResult // from Conn.Ping; nil for path pings
	probe  int             // a path MTU probe of this IP packet size; 0 if not
}

// maxCandidates bounds a peer's candidate set; learned addresses beyond it
// replace the oldest learned one.
const maxCandidates = 32

func newPeer(k key.NodePublic) *peer {
	p := &peer{
		key:   k,
		cands: make(map[netip.AddrPort]*candidate),
		pings: make(map[disco.TxID]*sentPing),
	}
	p.ep = &peerEndpoint{p: p}
	return p
}

// SetPeers replaces the peer set. Peers keep their path state across
// calls; new endpoints become candidates; a removed peer's sockets close.
func (c *Conn) SetPeers(peers []Peer) {
	c.mu.Lock()
	seen := make(map[key.NodePublic]bool, len(peers))
	for _, np := range peers {
		seen[np.NodeKey] = true
		p := c.peerLocked(np.NodeKey)
		if p.disco != np.DiscoKey {
			if !p.disco.IsZero() {
				c.unindexDiscoLocked(p)
			}
			// A new disco key means the peer restarted: its old
			// paths and pings mean nothing now.
			p.disco = np.DiscoKey
			p.shared = nil
			if !np.DiscoKey.IsZero() {
				p.shared = disco.NewSharedKey(c.opts.DiscoKey, np.DiscoKey)
				c.indexDiscoLocked(p)
			}
			p.resetPathLocked(c)
			p.lastDiscovery = time.Time{}
			p.nextDiscovery.Store(0)
		}
		p.homeRegion.Store(int64(np.HomeRegion))
		p.hardNAT = np.HardNAT
		p.mapEps = slices.Clone(np.Endpoints)
		p.runHeldGuessLocked(c, time.Now())
		// Map endpoints the peer no longer reports stop being
		// candidates, unless one is the path in use (its pongs decide).
		for a, cd := range p.cands {
			if cd.origin == "map" && cd != p.best && !slices.Contains(np.Endpoints, a) {
				delete(p.cands, a)
			}
		}
		added := false
		for _, ep := range np.Endpoints {
			if p.addCandidateLocked(ep, nil, "map") {
				added = true
			}
		}
		if added && p.active(c, time.Now()) {
			// New endpoints for a peer in use: try them now.
			p.lastDiscovery = time.Time{}
		}
	}
	for k, p := range c.peers {
		if !seen[k] {
			p.removed.Store(true)
			p.closeSocketsLocked(c, nil)
			p.best = nil
			p.path.Store(nil)
			delete(c.peers, k)
			c.retired[k] = p
			if !p.disco.IsZero() {
				c.unindexDiscoLocked(p)
			}
			p.disco, p.shared = key.DiscoPublic{}, nil
		}
	}
	c.rebuildAddrsLocked()
	c.unlock()
	c.wake()
}

// peerLocked returns the peer for k, making it if needed. A peer removed
// from the map earlier comes back as the same object, because wireguard-go
// may still hold its endpoint (the device's and the map's updates are not
// atomic together) and must not be left pointing at a dead one.
func (c *Conn) peerLocked(k key.NodePublic) *peer {
	if p := c.peers[k]; p != nil {
		return p
	}
	p := c.retired[k]
	if p != nil {
		delete(c.retired, k)
		p.removed.Store(false)
	} else {
		p = newPeer(k)
	}
	c.peers[k] = p
	return p
}

// addCandidateLocked adds addr as a candidate; it reports whether it is new.
func (p *peer) addCandidateLocked(addr netip.AddrPort, sock *extraSock, origin string) bool {
	if !addr.IsValid() || addr.Port() == 0 {
		return false
	}
	if cd := p.cands[addr]; cd != nil {
		return false
	}
	if len(p.cands) >= maxCandidates {
		var oldest *candidate
		for _, cd := range p.cands {
			if cd.origin == "map" || cd == p.best {
				continue
			}
			if oldest == nil || cd.lastPong.Before(oldest.lastPong) {
				oldest = cd
			}
		}
		if oldest == nil {
			return false
		}
		delete(p.cands, oldest.addr)
	}
	p.cands[addr] = &candidate{addr: addr, sock: sock, origin: origin}
	return true
}

// rebuildAddrsLocked republishes the source-address → peer map read by the
// receive path.
// When two peers claim one address (a stale learned address the NAT has
// since given to another node), the one that answered there last wins:
// wireguard-go would otherwise roam the wrong peer onto it.
func (c *Conn) rebuildAddrsLocked() {
	m := make(map[netip.AddrPort]*peer)
	last := make(map[netip.AddrPort]time.Time)
	for _, p := range c.peers {
		for a, cd := range p.cands {
			if m[a] == nil || cd.lastPong.After(last[a]) {
				m[a], last[a] = p, cd.lastPong
			}
		}
	}
	c.byAddr.Store(&m)
}

func (p *peer) active(c *Conn, now time.Time) bool {
	return now.UnixNano()-p.lastSend.Load() < int64(c.timers.Active)
}

// doubtful reports whether cd's latest ping has gone unanswered for well
// over its RTT: the path may have died though its trust has not run out.
func (p *peer) doubtful(cd *candidate, now time.Time) bool {
	return !cd.unanswered.IsZero() && now.Sub(cd.unanswered) > max(4*cd.rtt, minDoubt)
}

// minDoubt is the least time an unanswered ping must wait before its path
// is doubted, so that a busy machine's slow pong does not move paths.
const minDoubt = 200 * time.Millisecond

// bestOtherLocked returns the trusted, undoubted candidate other than
// skip with the lowest RTT, or nil.
func (p *peer) bestOtherLocked(c *Conn, now time.Time, skip *candidate) *candidate {
	var best *candidate
	for _, cd := range p.cands {
		if cd == skip || !p.trusted(c, cd, now) || p.doubtful(cd, now) {
			continue
		}
		if best == nil || cd.rtt < best.rtt {
			best = cd
		}
	}
	return best
}

func (p *peer) trusted(c *Conn, cd *candidate, now time.Time) bool {
	return cd != nil && !cd.lastPong.IsZero() && now.Sub(cd.lastPong) < c.timers.TrustWindow
}

// maintainLocked runs the peer's timers: trust expiry, heartbeats,
// discovery and re-probes, and the end of a guessing round.
func (p *peer) maintainLocked(c *Conn, now time.Time) {
	for tx, sp := range p.pings {
		if now.Sub(sp.at) > c.timers.PingTimeout {
			delete(p.pings, tx)
		}
	}
	if p.guess != nil && !p.guess.opening && now.After(p.guess.deadline) {
		p.endGuessLocked(c, "window over")
	}
	if p.best != nil && !p.trusted(c, p.best, now) {
		c.log.Info("direct path lost, using relay", "peer", p.key.ShortString(), "addr", p.best.addr)
		p.best = nil
		p.setPathLocked(c)
		p.lastDiscovery = time.Time{}
	}
	if p.shared == nil {
		return
	}
	p.answerCallLocked(c, now)
	if !p.active(c, now) {
		if p.best == nil && c.noRelay.Load() {
			p.probeIdleLocked(c, now)
		} else if !c.noRelay.Load() {
			p.idleBackoff, p.idleProbeAt = 0, time.Time{}
		}
		return
	}
	if p.best != nil && p.doubtful(p.best, now) {
		p.handleDoubtLocked(c, now)
	}
	if p.best != nil {
		if now.Sub(p.best.lastPing) >= c.timers.Heartbeat ||
			(p.silentLocked(now) && now.Sub(p.best.lastPing) >= silenceAfter) ||
			(p.relayedIn.Load() > p.best.lastPing.UnixNano() && now.Sub(p.best.lastPing) >= minDoubt) {
			p.pingLocked(c, p.best, now)
		}
		p.probeLocked(c, p.best, now)
		if now.Sub(p.lastDiscovery) >= c.timers.Reprobe {
			p.discoverLocked(c, now)
		}
		return
	}
	// A path that died under traffic is looked for again every
	// heartbeat for a while, not every discovery interval: it worked a
	// moment ago and most likely comes back soon.
	every := c.timers.Discovery
	if now.Sub(p.fellBack) < c.timers.Reprobe {
		every = min(every, c.timers.Heartbeat)
	}
	if now.Sub(p.lastDiscovery) >= every {
		p.discoverLocked(c, now)
	}
}

// handleDoubtLocked deals with a best path that stopped answering.
func (p *peer) handleDoubtLocked(c *Conn, now time.Time) {
	// The path stopped answering (a NAT rebinding, a link going
	// down). Move to another path that answered lately if there
	// is one; else look for the peer everywhere now instead of
	// waiting out the trust window.
	// With none, and a relay to carry the traffic meanwhile, the
	// packets in flight go by the relay until a pong brings a
	// direct path back, instead of into a path that may be dead
	// until its trust runs out.
	if alt := p.bestOtherLocked(c, now, p.best); alt != nil {
		c.log.Info("direct path not answering, moving", "peer", p.key.ShortString(), "from", p.best.addr, "to", alt.addr)
		p.best = alt
		p.setPathLocked(c)
		c.rebuildAddrsLocked()
	} else if p.relayUsable(c) {
		c.log.Info("direct path not answering, using relay meanwhile", "peer", p.key.ShortString(), "addr", p.best.addr)
		p.best = nil
		p.fellBack = now
		p.setPathLocked(c)
		p.discoverLocked(c, now)
		// Ping again what discovery skipped as pinged lately: those
		// pings may have left before the network settled (a new
		// address before its route).
		for _, cd := range p.cands {
			if now.Sub(cd.lastPing) >= minDoubt {
				p.pingLocked(c, cd, now)
			}
		}
		if rc, ok := c.opts.Relay.(relayChecker); ok {
			region := int(p.homeRegion.Load())
			c.callbacks = append(c.callbacks, func() { rc.CheckRelay(region) })
		}
	} else if now.Sub(p.lastDiscovery) >= c.timers.Heartbeat {
		p.discoverLocked(c, now)
	}
}

// silenceAfter is how long we may send on a direct path without hearing
// from it (a WireGuard packet or a pong) before it is probed; with a
// heartbeat alone, a path that died under traffic (a NAT rebinding, a
// renumbered LAN) would go unnoticed for up to a heartbeat. A peer we
// send to but that sends nothing back is probed this often instead of
// every heartbeat.
const silenceAfter = 500 * time.Millisecond

// silentLocked reports whether we are sending to the peer and have been
// for over silenceAfter since the best path last brought anything back.
func (p *peer) silentLocked(now time.Time) bool {
	last := p.heard.Load()
	if pong := p.best.lastPong; !pong.IsZero() {
		last = max(last, pong.UnixNano())
	}
	sent := p.lastSend.Load()
	return now.UnixNano()-sent < int64(silenceAfter) && sent-last > int64(silenceAfter)
}

// relayUsable reports whether packets to the peer can go by a relay: it
// has a home region and some relay accepts us.
func (p *peer) relayUsable(c *Conn) bool {
	return c.opts.Relay != nil && p.homeRegion.Load() != 0 && !c.noRelay.Load()
}

// maxIdleBackoff bounds the interval between probes of an idle peer while
// no relay is reachable.
const maxIdleBackoff = 30 * time.Second

// probeIdleLocked pings the known endpoints of a peer not in use and
// without a direct path, while no relay is reachable: 1 s after the relay
// is lost, then at doubling intervals up to maxIdleBackoff. Without a relay
// nothing else would find the path again (no call-me-maybe can reach the
// peer), so a peer that restarted while the control server and its relay
// were down would stay unreachable until its own traffic started
// discovery; with these probes its first packet finds a direct path ready.
func (p *peer) probeIdleLocked(c *Conn, now time.Time) {
	if now.Before(p.idleProbeAt) {
		return
	}
	p.idleBackoff = min(max(2*p.idleBackoff, time.Second), maxIdleBackoff)
	p.idleProbeAt = now.Add(p.idleBackoff)
	for _, cd := range p.cands {
		p.pingLocked(c, cd, now)
	}
}

// discoverLocked is one discovery round: ping every candidate, ask the
// peer through the relay to ping us back (call-me-maybe), and start a
// port-guessing round when the NAT pair calls for one.
func (p *peer) discoverLocked(c *Conn, now time.Time) {
	p.lastDiscovery = now
	next := c.timers.Discovery
	if p.best != nil {
		next = c.timers.Reprobe
	}
	p.nextDiscovery.Store(now.Add(next).UnixNano())
	for _, cd := range p.cands {
		if now.Sub(cd.lastPing) >= c.timers.Discovery/4 {
			p.pingLocked(c, cd, now)
		}
	}
	if region := int(p.homeRegion.Load()); region != 0 && c.opts.Relay != nil {
		eps := c.endpoints
		if pkt := c.sealLocked(p, &disco.CallMeMaybe{Endpoints: eps}); pkt != nil {
			c.pending = append(c.pending, outPacket{pkt: pkt, relay: true, region: region, peer: p.key})
		}
	}
	if p.best == nil {
		p.maybeStartGuessLocked(c, now)
	}
}

// pingLocked sends a path ping to a candidate.
func (p *peer) pingLocked(c *Conn, cd *candidate, now time.Time) {
	tx := disco.NewTxID()
	pkt := c.sealLocked(p, &disco.Ping{TxID: tx, NodeKey: c.opts.NodeKey})
	if pkt == nil {
		return
	}
	cd.lastPing = now
	if cd.unanswered.IsZero() {
		cd.unanswered = now
	}
	p.pings[tx] = &sentPing{to: cd.addr, sock: cd.sock, at: now}
	c.pending = append(c.pending, outPacket{pkt: pkt, dst: cd.addr, sock: cd.sock})
}

// noteDirectPongLocked records a pong that came back over a direct address
// and makes that address the path if it beats the current one. A better
// path must be clearly better (a quarter less RTT) so two similar paths do
// not flap.
func (p *peer) noteDirectPongLocked(c *Conn, sp *sentPing, now time.Time) {
	cd := p.cands[sp.to]
	if cd == nil {
		p.addCandidateLocked(sp.to, sp.sock, "guess")
		cd = p.cands[sp.to]
		if cd == nil {
			return
		}
		c.rebuildAddrsLocked()
	}
	if cd == p.best && p.trusted(c, cd, now) && cd.sock != sp.sock {
		// The pong came back through another of our sockets (on a
		// hard-NAT node each guessing socket pings the same address).
		// The path keeps the socket it has: moving it would leave it
		// on a socket the round is about to close.
		return
	}
	cd.sock = sp.sock
	cd.lastPong = now
	cd.unanswered = time.Time{}
	cd.rtt = now.Sub(sp.at)
	cur := p.best
	switch {
	case cur == cd:
	case cur == nil, !p.trusted(c, cur, now), p.doubtful(cur, now), cd.rtt < cur.rtt*3/4:
		p.best = cd
		c.log.Info("direct path", "peer", p.key.ShortString(), "addr", cd.addr, "rtt", cd.rtt, "origin", cd.origin)
		c.rebuildAddrsLocked()
	}
	p.setPathLocked(c)
	if p.guess != nil && p.best != nil {
		p.endGuessLocked(c, "met")
	}
}

// setPathLocked publishes best as the path Send uses.
func (p *peer) setPathLocked(c *Conn) {
	if p.best == nil {
		p.path.Store(nil)
		return
	}
	if old := p.path.Load(); old != nil && old.addr == p.best.addr && old.sock == p.best.sock {
		return
	}
	np := &path{addr: p.best.addr, sock: p.best.sock}
	if np.sock == nil {
		ep, err := c.inner.ParseEndpoint(np.addr.String())
		if err != nil {
			c.log.Warn("bad path address", "addr", np.addr, "err", err)
			p.best = nil
			p.path.Store(nil)
			return
		}
		np.innerEP = ep
	}
	p.path.Store(np)
}

// resetPathLocked forgets everything learned about the peer's paths.
func (p *peer) resetPathLocked(c *Conn) {
	p.best = nil
	p.path.Store(nil)
	clear(p.pings)
	for a, cd := range p.cands {
		if cd.origin != "map" {
			delete(p.cands, a)
		}
	}
	p.closeSocketsLocked(c, nil)
}

// closeSocketsLocked closes the peer's extra sockets except keep. A
// candidate reached through a closed socket loses its trust, and stops
// being the path if it was.
func (p *peer) closeSocketsLocked(c *Conn, keep *extraSock) {
	kept := p.socks[:0]
	for _, s := range p.socks {
		if s == keep {
			kept = append(kept, s)
			continue
		}
		s.pc.Close()
		s.closed = true
		// A pong already read from s must not bring it back as a
		// path: its ping is forgotten.
		for tx, sp := range p.pings {
			if sp.sock == s {
				delete(p.pings, tx)
			}
		}
		for _, cd := range p.cands {
			if cd.sock == s {
				cd.sock = nil
				cd.lastPong = time.Time{}
				if cd == p.best {
					p.best = nil
				}
			}
		}
	}
	p.socks = kept
	p.setPathLocked(c)
}

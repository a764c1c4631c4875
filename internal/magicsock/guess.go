package magicsock

import (
	"net/netip"
	"time"

	"weft/internal/disco"
)

// GuessBudget bounds one port-guessing round (docs/disco.md works out the
// odds). The hard side sends about Sockets pings; the easy side at most
// Probes; both stop at the first meeting or after Window.
type GuessBudget struct {
	// Sockets is how many extra sockets the hard side opens. Default 256.
	Sockets int
	// Probes is how many random ports the easy side pings. Default 1024.
	Probes int
	// Window is how long a round may last. Default 3s.
	Window time.Duration
}

func (b GuessBudget) withDefaults() GuessBudget {
	if b.Sockets <= 0 {
		b.Sockets = 256
	}
	if b.Probes <= 0 {
		b.Probes = 1024
	}
	if b.Window <= 0 {
		b.Window = 3 * time.Second
	}
	return b
}

// maxHardRounds bounds the rounds this node runs as the hard side at once,
// and so the extra sockets it holds (maxHardRounds × Sockets).
const maxHardRounds = 2

func (c *Conn) hardRoundsLocked() int { return c.roundsLocked(true) }

// maxEasyRounds bounds the rounds this node runs as the easy side at
// once, and so the probes it sends in one window (maxEasyRounds × Probes).
const maxEasyRounds = 2

// roundsLocked counts the rounds in progress on the hard side (hard) or
// the easy side.
func (c *Conn) roundsLocked(hard bool) int {
	n := 0
	for _, p := range c.peers {
		if p.guess != nil && p.guess.hard == hard {
			n++
		}
	}
	return n
}

// guessRound is one port-guessing round with one peer.
type guessRound struct {
	hard     bool // we are the hard side (we open the sockets)
	deadline time.Time
	probing  bool // easy side: the prober runs
	// opening: hard side, the sockets are still being opened; the
	// window starts once they are, so a slow machine does not spend
	// it before the first ping.
	opening bool
	stop    chan struct{} // closed when the round ends
	sent    int           // packets sent in the round
}

// extraSock is an extra UDP socket owned by one peer: a guessing socket,
// and after a meeting on it, that peer's path.
type extraSock struct {
	pc PacketConn
	p  *peer
	// closed is set, under Conn.mu, when pc is closed. A packet its
	// reader took before the close may still be handled after it, and
	// must not make the socket a path again.
	closed bool
}

// maybeStartGuessLocked starts a round from the easy side when the peer is
// behind a hard NAT and we are not. The easy side always starts: it knows
// the one public endpoint the hard side must aim its sockets at. It comes
// here from its own discovery (it sends to the peer) and when the hard
// peer calls (answerCallLocked).
func (p *peer) maybeStartGuessLocked(c *Conn, now time.Time) {
	region := int(p.homeRegion.Load())
	if c.opts.Relay == nil || region == 0 || p.guess != nil || now.Before(p.guessNotAfter) {
		return
	}
	if !p.hardNAT || c.report.MappingVariesByDestIP || !c.report.GlobalV4.IsValid() {
		return
	}
	if c.roundsLocked(false) >= maxEasyRounds {
		return // discovery comes back here after the running rounds
	}
	b := c.opts.Guess
	pkt := c.sealLocked(p, &disco.PortGuess{
		Public:   c.report.GlobalV4,
		Sockets:  uint16(b.Sockets),
		Probes:   uint16(b.Probes),
		WindowMS: uint16(b.Window.Milliseconds()),
	})
	if pkt == nil {
		return
	}
	// Waiting for the hard side's answer takes a relay round trip, so
	// the easy side's round gets two windows.
	// The cooldown starts when the hard side answers and probing begins
	// (handleGuessLocked). A request the hard side refuses (its map may
	// not list our endpoint yet) or never answers costs it nothing, so
	// we ask again at the next discovery after this round's end rather
	// than a whole cooldown later.
	p.guess = &guessRound{deadline: now.Add(2 * b.Window), stop: make(chan struct{})}
	c.log.Info("port guessing: asking hard-NAT peer", "peer", p.key.ShortString(), "public", c.report.GlobalV4)
	c.pending = append(c.pending, outPacket{pkt: pkt, relay: true, region: region, peer: p.key})
}

// answerCallLocked starts a round, as the easy side, for a hard-NAT peer
// that called (a call-me-maybe through the relay, within the last
// Timers.Discovery) while we have no trusted direct path to it. A hard
// node that starts a connection has nothing to aim at: the easy side's
// filter drops its pings, and only the easy side may start a round (it
// names the endpoint the hard side's sockets aim at). Without this the
// easy side started one only once it sent to the peer itself, so a hard
// side whose traffic was answered only at the disco level (weft ping), or
// not yet, stayed on the relay. It is called on the call and on each tick
// after it, since our netcheck or the map's word that the peer is hard
// may come a moment after the call. The round is still ours, with every
// check of maybeStartGuessLocked and the cooldown; a call costs the peer
// one relay message and buys at most one relay message back per round.
func (p *peer) answerCallLocked(c *Conn, now time.Time) {
	if p.calledAt.IsZero() || now.Sub(p.calledAt) >= c.timers.Discovery || p.trusted(c, p.best, now) {
		return
	}
	p.maybeStartGuessLocked(c, now)
}

// handleGuessLocked takes a port-guess message from the peer (through the
// relay only). Each side checks the message before it sends anything,
// because a round costs hundreds of packets and the addresses come from
// the peer: see acceptGuessRequestLocked and guessTargetLocked.
func (p *peer) handleGuessLocked(c *Conn, m *disco.PortGuess, src source, now time.Time) {
	if !src.relay || !c.open {
		return
	}
	if p.trusted(c, p.best, now) {
		return
	}
	b := c.opts.Guess
	if !m.Hard {
		// The easy side asks us, the hard side, to open sockets
		// toward its public endpoint.
		switch p.acceptGuessRequestLocked(c, m.Public, now) {
		case guessAccept:
			p.startHardRoundLocked(c, m.Public, int(m.Sockets), src.region, now)
		case guessHold:
			p.heldGuess = &heldGuess{public: m.Public, sockets: int(m.Sockets), region: src.region, until: now.Add(heldGuessFor)}
		}
		return
	}
	// The hard side is ready: probe random ports on its address, but
	// only in a round we started and whose probing has not begun.
	r := p.guess
	if r == nil || r.hard || r.probing {
		return
	}
	target, ok := p.guessTargetLocked(c, m.Public.Addr())
	if !ok {
		return
	}
	r.probing = true
	r.deadline = now.Add(b.Window)
	p.guessNotAfter = now.Add(c.timers.Reprobe)
	probes := min(int(m.Probes), b.Probes)
	c.wg.Add(1)
	go c.probe(p, r, target, probes, b.Window, c.closed)
}

// startHardRoundLocked takes the hard side of a round aimed at public.
func (p *peer) startHardRoundLocked(c *Conn, public netip.AddrPort, sockets, region int, now time.Time) {
	b := c.opts.Guess
	n := min(sockets, b.Sockets)
	r := &guessRound{hard: true, opening: true, deadline: now.Add(b.Window), stop: make(chan struct{})}
	p.guess = r
	p.guessNotAfter = now.Add(c.timers.Reprobe)
	c.wg.Add(1)
	go c.openGuessSockets(p, r, public, n, region)
}

// heldGuessFor is how long a request for an endpoint the map does not list
// yet waits for the map: a control delta takes a batch window or two.
const heldGuessFor = 3 * time.Second

// heldGuess is a port-guess request waiting for the map (peer.heldGuess).
type heldGuess struct {
	public  netip.AddrPort
	sockets int
	region  int
	until   time.Time
}

// runHeldGuessLocked acts on a held request once the map lists its
// endpoint, with every other check made again; a request held too long is
// dropped.
func (p *peer) runHeldGuessLocked(c *Conn, now time.Time) {
	h := p.heldGuess
	if h == nil {
		return
	}
	if now.After(h.until) || p.trusted(c, p.best, now) {
		// Too old, or a direct path formed meanwhile: no round needed.
		p.heldGuess = nil
		return
	}
	switch p.acceptGuessRequestLocked(c, h.public, now) {
	case guessAccept:
		p.heldGuess = nil
		p.startHardRoundLocked(c, h.public, h.sockets, h.region, now)
	case guessRefuse:
		p.heldGuess = nil
	}
}

// Answers of acceptGuessRequestLocked.
type guessAnswer int

const (
	guessRefuse guessAnswer = iota
	guessAccept
	// guessHold: everything but the map's endpoint list allows it.
	guessHold
)

// acceptGuessRequestLocked decides whether we, asked by the peer, take the
// hard side of a round aimed at public: only while our NAT is hard (else
// there is nothing to guess), no round runs and the cooldown since the
// last one (Timers.Reprobe) has passed, the hard rounds at once stay
// under maxHardRounds, and public is one of the peer's own endpoints from
// the map and a usable target. A message alone never names where the
// round's hundreds of pings go.
func (p *peer) acceptGuessRequestLocked(c *Conn, public netip.AddrPort, now time.Time) guessAnswer {
	why := ""
	switch {
	case !c.report.MappingVariesByDestIP:
		why = "our NAT is not hard"
	case p.guess != nil:
		why = "a round is running"
	case now.Before(p.guessNotAfter):
		why = "cooldown"
	case !c.usableTargetLocked(p, public):
		why = "not a usable target"
	case c.hardRoundsLocked() >= maxHardRounds:
		// Each round holds hundreds of sockets; the easy side asks
		// again after its cooldown.
		why = "too many rounds at once"
	case !p.isMapEndpoint(public):
		c.log.Debug("port guessing: request held until the map lists its endpoint", "peer", p.key.ShortString(), "public", public)
		return guessHold
	default:
		return guessAccept
	}
	c.log.Debug("port guessing: request refused", "peer", p.key.ShortString(), "public", public, "why", why)
	return guessRefuse
}

// guessTargetLocked is the hard side's address the easy side probes:
// named is what the hard side's message says, which must be the address
// of one of its endpoints from the map. A hard side without a STUN answer
// names none; then its public address from the map (the first public
// one) has to do.
func (p *peer) guessTargetLocked(c *Conn, named netip.Addr) (netip.Addr, bool) {
	for _, a := range p.mapEps {
		if !c.usableTargetLocked(p, a) {
			continue
		}
		if named.IsValid() && !named.IsUnspecified() {
			if a.Addr().Unmap() == named.Unmap() {
				return named.Unmap(), true
			}
			continue
		}
		if a.Addr().Is4() && !a.Addr().IsPrivate() {
			return a.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// openGuessSockets is the hard side of a round: open n sockets, ping the
// easy side's public endpoint from each (which makes n NAT mappings, each
// with a port we cannot know), then tell the easy side to start probing.
func (c *Conn) openGuessSockets(p *peer, r *guessRound, target netip.AddrPort, n int, region int) {
	defer c.wg.Done()
	c.mu.Lock()
	mark := c.mark
	c.mu.Unlock()
	var socks []PacketConn
	for range n {
		pc, err := c.network.ListenUDP4(mark)
		if err != nil {
			c.log.Warn("port guessing: socket", "err", err)
			break
		}
		socks = append(socks, pc)
	}
	c.mu.Lock()
	if p.guess != r || !c.open || p.removed.Load() {
		c.mu.Unlock()
		for _, pc := range socks {
			pc.Close()
		}
		return
	}
	now := time.Now()
	r.opening = false
	r.deadline = now.Add(c.opts.Guess.Window)
	p.addCandidateLocked(target, nil, "guess")
	c.rebuildAddrsLocked()
	for _, pc := range socks {
		s := &extraSock{pc: pc, p: p}
		p.socks = append(p.socks, s)
		c.wg.Add(1)
		go c.readExtra(s)
		tx := disco.NewTxID()
		if pkt := c.sealLocked(p, &disco.Ping{TxID: tx, NodeKey: c.opts.NodeKey}); pkt != nil {
			p.pings[tx] = &sentPing{to: target, sock: s, at: now}
			c.pending = append(c.pending, outPacket{pkt: pkt, dst: target, sock: s})
			r.sent++
		}
	}
	ready := &disco.PortGuess{
		Hard:     true,
		Public:   netip.AddrPortFrom(c.report.GlobalV4.Addr(), 0),
		Sockets:  uint16(len(socks)),
		Probes:   uint16(c.opts.Guess.Probes),
		WindowMS: uint16(c.opts.Guess.Window.Milliseconds()),
	}
	if pkt := c.sealLocked(p, ready); pkt != nil {
		c.pending = append(c.pending, outPacket{pkt: pkt, relay: true, region: region, peer: p.key})
	}
	c.log.Info("port guessing: sockets open", "peer", p.key.ShortString(), "sockets", len(socks), "target", target)
	c.unlock()
}

// probe is the easy side of a round: ping random ports of the hard side's
// address, spread over two thirds of the window, until one answers, the
// round ends or the budget is spent.
func (c *Conn) probe(p *peer, r *guessRound, target netip.Addr, probes int, window time.Duration, closed chan struct{}) {
	defer c.wg.Done()
	const batch = 16
	steps := max(1, (probes+batch-1)/batch)
	tick := time.NewTicker(max(time.Millisecond, window*2/3/time.Duration(steps)))
	defer tick.Stop()
	tried := make(map[uint16]bool, probes)
	for sent := 0; sent < probes; {
		c.mu.Lock()
		if p.guess != r || p.best != nil || !c.open {
			c.mu.Unlock()
			return
		}
		now := time.Now()
		for i := 0; i < batch && sent < probes; i++ {
			port := uint16(1024 + c.rand.IntN(65536-1024))
			if tried[port] {
				continue
			}
			tried[port] = true
			sent++
			r.sent++
			dst := netip.AddrPortFrom(target, port)
			tx := disco.NewTxID()
			pkt := c.sealLocked(p, &disco.Ping{TxID: tx, NodeKey: c.opts.NodeKey})
			if pkt == nil {
				break
			}
			p.pings[tx] = &sentPing{to: dst, at: now}
			c.pending = append(c.pending, outPacket{pkt: pkt, dst: dst})
		}
		c.unlock()
		select {
		case <-closed:
			return
		case <-r.stop:
			return
		case <-tick.C:
		}
	}
}

// endGuessLocked ends the peer's round. On the hard side every extra
// socket closes except the one the path now uses.
func (p *peer) endGuessLocked(c *Conn, why string) {
	r := p.guess
	if r == nil {
		return
	}
	p.guess = nil
	close(r.stop)
	var keep *extraSock
	if p.best != nil {
		keep = p.best.sock
	}
	if r.hard {
		p.closeSocketsLocked(c, keep)
	}
	c.log.Info("port guessing: round over", "peer", p.key.ShortString(), "why", why,
		"hard_side", r.hard, "packets", r.sent, "direct", p.best != nil)
}

// readExtra reads one extra socket until it is closed.
func (c *Conn) readExtra(s *extraSock) {
	defer c.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, src, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		switch {
		case disco.LooksLikeDisco(pkt):
			c.handleDisco(pkt, source{addr: src, sock: s})
		case isSTUN(pkt):
		default:
			if (*c.byAddr.Load())[src] == s.p && !s.p.removed.Load() {
				if pa := s.p.path.Load(); pa != nil && pa.sock == s && pa.addr == src {
					s.p.heard.Store(time.Now().UnixNano())
				}
				c.inject(s.p, pkt)
			}
		}
	}
}

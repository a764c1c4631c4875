package magicsock

import (
	"net/netip"
	"slices"
	"time"

	"weft/internal/disco"
	"weft/internal/key"
)

// pingBackGap is the least time between two pings to one candidate sent
// in answer to the peer (its ping, its call-me-maybe).
const pingBackGap = 10 * time.Millisecond

// answerBudget is how many pings the Conn sends in answer to one peer's
// messages (pings from new addresses, call-me-maybe) per discovery
// interval, and at most at once: one for each candidate the peer may
// have. A peer that sends more gets no more pings, so its messages cannot
// be turned into a flood at the addresses they name (docs/disco.md).
const answerBudget = maxCandidates

// takeAnswerPingLocked spends one of p's answer pings, refilled at
// answerBudget per discovery interval; it reports false when none is left.
func (p *peer) takeAnswerPingLocked(c *Conn, now time.Time) bool {
	if p.answerAt.IsZero() {
		p.answerTokens = answerBudget
	} else {
		refill := float64(now.Sub(p.answerAt)) / float64(c.timers.Discovery) * answerBudget
		p.answerTokens = min(answerBudget, p.answerTokens+refill)
	}
	p.answerAt = now
	if p.answerTokens < 1 {
		return false
	}
	p.answerTokens--
	return true
}

// metadataAddr is the cloud instance-metadata address. It is link-local,
// so usableTargetLocked refuses it already; it is named here because a
// peer pointing a node at it is the case that matters most.
var metadataAddr = netip.AddrFrom4([4]byte{169, 254, 169, 254})

// usableTargetLocked reports whether the Conn may send disco to ap, an
// address the peer named in a message (call-me-maybe, port guessing)
// rather than one control published: a global unicast address (never
// loopback, link-local, multicast, unspecified, broadcast, the metadata
// address or the tailnet's own range) with a port, and not on one of this
// host's own networks unless one of the peer's map endpoints is on that
// network too, which puts the peer on our LAN.
func (c *Conn) usableTargetLocked(p *peer, ap netip.AddrPort) bool {
	a := ap.Addr().Unmap()
	if ap.Port() == 0 || !a.IsGlobalUnicast() || a == metadataAddr || isTailnetAddr(a) {
		return false
	}
	for _, lan := range c.lans {
		if lan.Contains(a) {
			return p.hasMapEndpointIn(lan)
		}
	}
	return true
}

// hasMapEndpointIn reports whether one of the peer's endpoints from the
// map lies in lan.
func (p *peer) hasMapEndpointIn(lan netip.Prefix) bool {
	return slices.ContainsFunc(p.mapEps, func(a netip.AddrPort) bool { return lan.Contains(a.Addr().Unmap()) })
}

// isMapEndpoint reports whether ap is one of the peer's endpoints from the
// map.
func (p *peer) isMapEndpoint(ap netip.AddrPort) bool { return slices.Contains(p.mapEps, ap) }

// handleDisco opens and acts on one disco packet from src.
func (c *Conn) handleDisco(pkt []byte, src source) {
	sender, err := disco.Sender(pkt)
	if err != nil {
		return
	}
	c.mu.Lock()
	claimants := c.discoClaimantsLocked(sender, src)
	var shared *disco.SharedKey
	if len(claimants) > 0 {
		shared = claimants[0].shared
	}
	c.mu.Unlock()
	if shared == nil {
		return
	}
	// Opening costs a Poly1305 and an XSalsa20 pass; it runs outside the
	// lock so a flood of junk with a peer's (public) disco key in it
	// does not stall every other peer. Every claimant of one disco key
	// shares the same key with us, so one opening serves them all.
	m, err := shared.Open(pkt)
	if err != nil {
		c.log.Debug("disco open failed", "src", src, "err", err)
		return
	}
	c.mu.Lock()
	defer c.unlock()
	p := claimantOf(claimants, m)
	if p == nil || p.disco != sender || p.shared == nil {
		return // ambiguous, or the peer's disco key changed meanwhile
	}
	now := time.Now()
	switch m := m.(type) {
	case *disco.Ping:
		c.handlePingLocked(p, m, src, now)
	case *disco.Pong:
		c.handlePongLocked(p, m, src, now)
	case *disco.CallMeMaybe:
		c.handleCallMeMaybeLocked(p, m, now)
		if src.relay {
			p.calledAt = now
			p.answerCallLocked(c, now)
		}
	case *disco.PortGuess:
		p.handleGuessLocked(c, m, src, now)
	}
}

// discoClaimantsLocked returns the peers a disco packet sealed by sender
// may come from. Through the relay that is the one peer the relay vouches
// for, if sender is its disco key. Directly it is every peer the map
// gives that disco key: usually one, but a node may publish another's
// disco key (it cannot hold the private half, so it cannot seal a
// message; it can only try to take the other's place).
func (c *Conn) discoClaimantsLocked(sender key.DiscoPublic, src source) []*peer {
	if src.relay {
		if p := c.peers[src.nodeKey]; p != nil && p.disco == sender {
			return []*peer{p}
		}
		return nil
	}
	return c.byDisco[sender]
}

// claimantOf picks the peer a message opened with a disco key belongs to
// when several peers claim that key: a ping names its sender's node key,
// a pong answers one of our pings. Anything else is ambiguous (nil).
func claimantOf(claimants []*peer, m disco.Message) *peer {
	if len(claimants) == 1 {
		return claimants[0]
	}
	for _, p := range claimants {
		switch m := m.(type) {
		case *disco.Ping:
			if m.NodeKey == p.key {
				return p
			}
		case *disco.Pong:
			if p.pings[m.TxID] != nil {
				return p
			}
		}
	}
	return nil
}

// indexDiscoLocked adds p to the disco-key index under its disco key,
// beside any other peer that claims the same key.
func (c *Conn) indexDiscoLocked(p *peer) {
	if others := c.byDisco[p.disco]; len(others) > 0 {
		c.log.Warn("two peers claim one disco key; each is told apart by its node key", "peer", p.key.ShortString(), "other", others[0].key.ShortString())
	}
	c.byDisco[p.disco] = append(c.byDisco[p.disco], p)
}

// unindexDiscoLocked removes p, and only p, from the disco-key index.
func (c *Conn) unindexDiscoLocked(p *peer) {
	rest := slices.DeleteFunc(c.byDisco[p.disco], func(q *peer) bool { return q == p })
	if len(rest) == 0 {
		delete(c.byDisco, p.disco)
		return
	}
	c.byDisco[p.disco] = rest
}

// replyLocked queues m back along the way src came.
func (c *Conn) replyLocked(p *peer, m disco.Message, src source) {
	pkt := c.sealLocked(p, m)
	if pkt == nil {
		return
	}
	if src.relay {
		c.pending = append(c.pending, outPacket{pkt: pkt, relay: true, region: src.region, peer: p.key})
		return
	}
	c.pending = append(c.pending, outPacket{pkt: pkt, dst: src.addr, sock: src.sock})
}

func (c *Conn) handlePingLocked(p *peer, m *disco.Ping, src source, now time.Time) {
	if m.NodeKey != p.key || (src.sock != nil && src.sock.closed) {
		return
	}
	c.replyLocked(p, &disco.Pong{TxID: m.TxID, Src: src.addr}, src)
	if src.relay {
		return
	}
	// A ping from a new address is how a NAT rebinding (or the far end
	// of a hole punch) shows itself: learn the address and ping it back,
	// since its ping proves only the way toward us.
	// An untrusted candidate also moves to the socket the ping came in
	// on: on a hard-NAT node that is the guessing socket that met.
	moved := false
	cd := p.cands[src.addr]
	if cd == nil {
		if !p.addCandidateLocked(src.addr, src.sock, "learned") {
			return
		}
		c.rebuildAddrsLocked()
		cd = p.cands[src.addr]
		moved = true
	} else if cd.sock != src.sock && !p.trusted(c, cd, now) {
		cd.sock = src.sock
		moved = true
	}
	// Ping back at once, even if we pinged this address a moment ago:
	// that ping probably died in the peer's NAT before the peer's own
	// ping opened it, and waiting for the next discovery round would
	// leave our side on the relay for seconds. One ping back per ping
	// received (at most one per pingBackGap) cannot grow into a storm.
	// On the relay (no best path) a trusted address is pinged back too:
	// the path there just stopped answering, and the peer's ping says
	// it may work again.
	if (p.best == nil || !p.trusted(c, cd, now)) && (moved || now.Sub(cd.lastPing) >= pingBackGap) && p.takeAnswerPingLocked(c, now) {
		p.pingLocked(c, cd, now)
	}
}

func (c *Conn) handlePongLocked(p *peer, m *disco.Pong, src source, now time.Time) {
	sp := p.pings[m.TxID]
	if sp == nil || (src.sock != nil && src.sock.closed) {
		return
	}
	if sp.relay != src.relay || (!src.relay && (sp.to != src.addr || sp.sock != src.sock)) {
		// A pong must come back the way its ping went.
		return
	}
	delete(p.pings, m.TxID)
	rtt := now.Sub(sp.at)
	if !src.relay {
		p.noteDirectPongLocked(c, sp, now)
		if sp.probe > 0 {
			p.noteProbePongLocked(c, sp)
		}
		if sp.sock == nil {
			c.noteObservedLocked(m.Src)
		}
	}
	if sp.waiter != nil {
		res := PingResult{RTT: rtt, Path: PathInfo{Kind: PathRelay, RelayRegion: sp.region}}
		if !src.relay {
			res.Path = PathInfo{Kind: PathDirect, Endpoint: sp.to}
		}
		select {
		case sp.waiter <- res:
		default:
		}
	}
}

// handleCallMeMaybeLocked takes the endpoints the peer names as
// candidates and pings them. Only usable targets are taken (an endpoint
// the map already lists is taken as the map gave it), only the named
// endpoints are pinged, each at most once per pingBackGap, within the
// peer's answer budget.
func (c *Conn) handleCallMeMaybeLocked(p *peer, m *disco.CallMeMaybe, now time.Time) {
	added := false
	var named []netip.AddrPort
	for _, ep := range m.Endpoints {
		if !p.isMapEndpoint(ep) && !c.usableTargetLocked(p, ep) {
			continue
		}
		if p.addCandidateLocked(ep, nil, "call-me-maybe") {
			added = true
		}
		named = append(named, ep)
	}
	if added {
		c.rebuildAddrsLocked()
	}
	// The peer is pinging us right now; ping back at once so our pings
	// cross in the NATs (simultaneous open).
	for _, ep := range named {
		cd := p.cands[ep]
		if cd == nil || cd.sock != nil || p.trusted(c, cd, now) || now.Sub(cd.lastPing) < pingBackGap {
			continue
		}
		if !p.takeAnswerPingLocked(c, now) {
			return
		}
		p.pingLocked(c, cd, now)
	}
}

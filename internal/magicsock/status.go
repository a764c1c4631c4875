package magicsock

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"weft/internal/disco"
	"weft/internal/key"
)

// PathKind is how packets to a peer travel.
type PathKind string

// The path kinds, as `weft status --json` prints them.
const (
	PathDirect PathKind = "direct"
	PathRelay  PathKind = "relay"
	PathNone   PathKind = "none"
)

// PathInfo describes a peer's current path.
type PathInfo struct {
	Kind        PathKind       `json:"kind"`
	Endpoint    netip.AddrPort `json:"endpoint,omitzero"`
	RelayRegion int            `json:"relay_region,omitempty"`
	// MTU is the tunnel MTU a direct path carries (path MTU discovery);
	// zero on the relay.
	MTU int `json:"mtu,omitempty"`
}

func (pi PathInfo) String() string {
	switch pi.Kind {
	case PathDirect:
		return pi.Endpoint.String()
	case PathRelay:
		return fmt.Sprintf("relay %d", pi.RelayRegion)
	}
	return "none"
}

// PeerStatus is one peer's path state for `weft status`.
type PeerStatus struct {
	NodeKey key.NodePublic
	Path    PathInfo
	// RTT is the round-trip time of the last pong on the direct path; zero
	// on the relay.
	RTT      time.Duration
	LastPong time.Time
	// Active is whether packets went to the peer lately (Timers.Active);
	// weft status shows an inactive peer as idle.
	Active bool
}

// PingResult is one pong: the path it came back over and its RTT.
type PingResult struct {
	Path PathInfo
	RTT  time.Duration
}

func (p *peer) pathInfo(c *Conn) PathInfo {
	if pa := p.path.Load(); pa != nil {
		pi := PathInfo{Kind: PathDirect, Endpoint: pa.addr, MTU: MinTunnelMTU}
		if cd := p.cands[pa.addr]; cd != nil {
			pi.MTU = tunnelMTUFor(cd.probe.size)
		}
		return pi
	}
	if r := int(p.homeRegion.Load()); r != 0 && c.opts.Relay != nil {
		return PathInfo{Kind: PathRelay, RelayRegion: r}
	}
	return PathInfo{Kind: PathNone}
}

// PeerStatus returns the path state of one peer.
func (c *Conn) PeerStatus(k key.NodePublic) (PeerStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[k]
	if p == nil {
		return PeerStatus{}, false
	}
	return p.statusLocked(c), true
}

// Peers returns the path state of every peer, ordered by node key.
func (c *Conn) Peers() []PeerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]PeerStatus, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, p.statusLocked(c))
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.NodeKey.String(), b.NodeKey.String()) })
	return out
}

func (p *peer) statusLocked(c *Conn) PeerStatus {
	st := PeerStatus{NodeKey: p.key, Path: p.pathInfo(c), Active: p.active(c, time.Now())}
	if p.best != nil {
		st.RTT = p.best.rtt
		st.LastPong = p.best.lastPong
	}
	return st
}

// Ping sends one disco ping to peer over its current path and waits for
// the pong. While the path is the relay it also marks the peer in use, so
// discovery runs and a later Ping may come back direct (weft ping
// --until-direct relies on this).
func (c *Conn) Ping(ctx context.Context, k key.NodePublic) (PingResult, error) {
	c.mu.Lock()
	p := c.peers[k]
	if p == nil || p.shared == nil {
		c.mu.Unlock()
		return PingResult{}, fmt.Errorf("magicsock: ping: unknown peer %s", k.ShortString())
	}
	if !c.open {
		c.mu.Unlock()
		return PingResult{}, ErrClosed
	}
	now := time.Now()
	tx := disco.NewTxID()
	pkt := c.sealLocked(p, &disco.Ping{TxID: tx, NodeKey: c.opts.NodeKey})
	sp := &sentPing{at: now, waiter: make(chan PingResult, 1)}
	if pa := p.path.Load(); pa != nil {
		sp.to, sp.sock = pa.addr, pa.sock
		c.pending = append(c.pending, outPacket{pkt: pkt, dst: pa.addr, sock: pa.sock})
	} else {
		region := int(p.homeRegion.Load())
		if region == 0 || c.opts.Relay == nil {
			c.mu.Unlock()
			return PingResult{}, fmt.Errorf("magicsock: ping %s: %w", k.ShortString(), ErrNoPath)
		}
		sp.relay, sp.region = true, region
		c.pending = append(c.pending, outPacket{pkt: pkt, relay: true, region: region, peer: k})
		p.lastSend.Store(now.UnixNano())
	}
	p.pings[tx] = sp
	c.unlock()
	c.wake()
	ctx, cancel := context.WithTimeout(ctx, c.timers.PingTimeout)
	defer cancel()
	select {
	case res := <-sp.waiter:
		return res, nil
	case <-ctx.Done():
		return PingResult{}, fmt.Errorf("magicsock: ping %s: no pong: %w", k.ShortString(), ctx.Err())
	}
}

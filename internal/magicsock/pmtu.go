package magicsock

import (
	"net/netip"
	"time"

	"weft/internal/disco"
)

// Path MTU discovery (docs/disco.md, "Path MTU"). Once a direct path is
// the one in use, the Conn sends it disco pings padded to the IP packet
// sizes in probeSizes, with the Don't Fragment bit set, and remembers the
// largest one answered. The tunnel MTU is then the largest that every
// peer's direct path in use carries: a path that carries 1500-byte packets
// lifts the tunnel to 1420, one that does not keeps it at 1280.

// probeSizes are the IP packet sizes, largest first, a direct path is
// probed at: Ethernet, PPPoE, DS-Lite and a margin for other tunnels.
var probeSizes = []int{1500, 1492, 1460, 1400}

// tunnelOverhead is what the tunnel adds to a packet on the path: an IPv6
// header (40; IPv4's 20 is taken as 40 too, so the tunnel MTU does not
// change with the path's address family), UDP (8) and WireGuard's
// transport header and tag (32).
const tunnelOverhead = 40 + 8 + 32

// MinTunnelMTU is the tunnel MTU without a confirmed probe: IPv6's
// minimum link MTU, which any path carries (fragmented by the sender's
// kernel if need be).
const MinTunnelMTU = 1280

// tunnelMTUFor is the tunnel MTU that a path carrying IP packets of size
// bytes allows; size 0 (nothing confirmed) gives MinTunnelMTU.
func tunnelMTUFor(size int) int {
	return max(size-tunnelOverhead, MinTunnelMTU)
}

// probePayload is the UDP payload that makes an IP packet of size bytes
// toward dst.
func probePayload(size int, dst netip.AddrPort) int {
	if dst.Addr().Unmap().Is4() {
		return size - 20 - 8
	}
	return size - 40 - 8
}

// pathMTUer is implemented by a Network that can say how large an IP
// packet toward dst may be to leave this host whole with the Don't
// Fragment bit set: the MTU of the route there, lowered by what the kernel
// learned from "fragmentation needed" / "packet too big" answers. On
// Linux a UDP socket sets DF on every datagram that fits that size
// (IP_PMTUDISC_WANT, the default of weft's sockets) and fragments larger
// ones locally, so the Conn sends a probe only if it fits: a probe that
// is answered then crossed the whole path unfragmented. Without it, or
// when it fails, no probes are sent and the tunnel stays at MinTunnelMTU.
type pathMTUer interface {
	PathMTU(dst netip.AddrPort, mark uint32) (int, error)
}

// probe holds a candidate's path MTU discovery. Guarded by Conn.mu.
type probe struct {
	// size is the largest IP packet size confirmed on the path; 0 for
	// none beyond MinTunnelMTU's.
	size int
	// at is when the last round started; open while it runs.
	at   time.Time
	open bool
	// best is the largest size answered in the open round.
	best int
}

// probeLocked runs cd's probe rounds: one when it becomes the path, then
// one per Reprobe interval. A round sends one padded ping per size the
// host lets out whole; it ends after PingTimeout. An answer raises size at
// once; the end of a round lowers it to what that round confirmed, so a
// path whose MTU shrank follows within a round.
func (p *peer) probeLocked(c *Conn, cd *candidate, now time.Time) {
	pr := &cd.probe
	if pr.open {
		if now.Sub(pr.at) < c.timers.PingTimeout {
			return
		}
		pr.open = false
		if pr.best != pr.size {
			c.log.Info("path MTU", "peer", p.key.ShortString(), "addr", cd.addr, "size", pr.best, "was", pr.size)
		}
		pr.size = pr.best
	}
	if !pr.at.IsZero() && now.Sub(pr.at) < c.timers.Reprobe {
		return
	}
	pm, ok := c.network.(pathMTUer)
	if !ok || cd.sock != nil || p.shared == nil {
		return
	}
	limit, err := pm.PathMTU(cd.addr, c.mark)
	pr.at, pr.best = now, 0
	if err != nil {
		c.log.Debug("path MTU of route unknown; not probing", "addr", cd.addr, "err", err)
		limit = 0
	}
	if limit < probeSizes[len(probeSizes)-1] && pr.size != 0 {
		// No probe fits what the host lets out whole: nothing
		// larger than the minimum is confirmed any more.
		c.log.Info("path MTU", "peer", p.key.ShortString(), "addr", cd.addr, "size", 0, "was", pr.size, "route_mtu", limit)
		pr.size = 0
	}
	for _, size := range probeSizes {
		if size > limit {
			continue
		}
		tx := disco.NewTxID()
		pkt := c.sealLocked(p, &disco.Ping{TxID: tx, NodeKey: c.opts.NodeKey, Padding: disco.PaddingFor(probePayload(size, cd.addr))})
		// Probes do not count as the path's pings: a probe too large
		// for the path is lost by design and must not make the path
		// look dead.
		p.pings[tx] = &sentPing{to: cd.addr, at: now, probe: size}
		c.pending = append(c.pending, outPacket{pkt: pkt, dst: cd.addr})
		pr.open = true
	}
}

// noteProbePongLocked records an answered probe of sp.probe bytes. The
// answer counts only if the host still lets a packet of that size out
// whole: a "fragmentation needed" for an earlier, larger probe of the same
// round may have lowered the route's MTU before this probe left, and the
// kernel then fragmented it, so its answer proves nothing. (A lowered
// route MTU stays lowered for minutes, so a size still allowed now was
// allowed when the probe left.)
func (p *peer) noteProbePongLocked(c *Conn, sp *sentPing) {
	cd := p.cands[sp.to]
	pm, ok := c.network.(pathMTUer)
	if cd == nil || !ok {
		return
	}
	if limit, err := pm.PathMTU(cd.addr, c.mark); err != nil || limit < sp.probe {
		return
	}
	pr := &cd.probe
	pr.best = max(pr.best, sp.probe)
	if sp.probe > pr.size {
		c.log.Info("path MTU", "peer", p.key.ShortString(), "addr", cd.addr, "size", sp.probe, "was", pr.size)
		pr.size = sp.probe
	}
}

// tunnelMTULocked is the tunnel MTU the current paths allow: the least
// over peers with a direct path of what that path carries. A peer on the
// relay does not lower it (relay frames carry any packet the tunnel
// makes), and with no direct path at all it is MinTunnelMTU.
func (c *Conn) tunnelMTULocked() int {
	mtu := 0
	for _, p := range c.peers {
		if p.best == nil {
			continue
		}
		m := tunnelMTUFor(p.best.probe.size)
		if mtu == 0 || m < mtu {
			mtu = m
		}
	}
	if mtu == 0 {
		return MinTunnelMTU
	}
	return mtu
}

// noteTunnelMTULocked tells Options.OnTunnelMTU when the tunnel MTU the
// paths allow changed.
func (c *Conn) noteTunnelMTULocked() {
	m := c.tunnelMTULocked()
	if m == c.tunnelMTU {
		return
	}
	c.tunnelMTU = m
	if f := c.opts.OnTunnelMTU; f != nil {
		c.callbacks = append(c.callbacks, func() { f(m) })
	}
}

// TunnelMTU returns the tunnel MTU the current paths allow.
func (c *Conn) TunnelMTU() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tunnelMTU
}

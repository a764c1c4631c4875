package filter

import (
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxFlows bounds the flows a node tracks: about 100 bytes each.
const DefaultMaxFlows = 65536

// Idle timeouts of tracked flows.
const (
	tcpTimeout     = 2 * time.Hour
	tcpDoneTimeout = 30 * time.Second // after a FIN or RST
	udpTimeout     = 2 * time.Minute
	icmpTimeout    = 30 * time.Second
)

// flow names a flow as this node sent it: from src to dst.
type flow struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
}

// conntrack remembers the flows this node opened, each until it has been
// idle past its timeout. When full, expired flows are swept and, if none
// were, an arbitrary flow is forgotten: its replies then face the rules.
type conntrack struct {
	mu    sync.Mutex
	max   int
	flows map[flow]time.Time // guarded by mu: when each flow expires
}

func (c *conntrack) init(max int) {
	c.max = max
	c.flows = make(map[flow]time.Time)
}

func (c *conntrack) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flows)
}

// key returns p's flow as this node sends it, and whether p is tracked
// at all (TCP, UDP, SCTP, ICMP echo requests).
func key(p *packet) (flow, bool) {
	switch {
	case hasPorts(p.proto):
		return flow{p.proto, p.src, p.dst, p.sport, p.dport}, true
	case isEcho(p.proto, p.icmpType):
		return flow{p.proto, p.src, p.dst, p.sport, 0}, true
	}
	return flow{}, false
}

// track records an outbound packet's flow.
func (c *conntrack) track(now time.Time, p *packet) {
	k, ok := key(p)
	if !ok {
		return
	}
	ttl := udpTimeout
	switch {
	case p.proto == 6 && p.tcpFlags&(tcpFIN|tcpRST) != 0:
		ttl = tcpDoneTimeout
	case p.proto == 6:
		ttl = tcpTimeout
	case p.proto == 1 || p.proto == 58:
		ttl = icmpTimeout
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.flows[k]; !ok && len(c.flows) >= c.max {
		c.makeRoomLocked(now)
	}
	c.flows[k] = now.Add(ttl)
}

func (c *conntrack) makeRoomLocked(now time.Time) {
	for k, exp := range c.flows {
		if now.After(exp) {
			delete(c.flows, k)
		}
	}
	for k := range c.flows {
		if len(c.flows) < c.max {
			return
		}
		delete(c.flows, k)
	}
}

// seen reports whether p belongs to a live flow this node sent: a reply
// (reply true: p travels the other way, an ICMP echo reply answers a
// request) or the original packet itself (reply false, for ICMP errors).
func (c *conntrack) seen(now time.Time, p *packet, reply bool) bool {
	var k flow
	switch {
	case !reply:
		var ok bool
		if k, ok = key(p); !ok {
			return false
		}
	case hasPorts(p.proto):
		k = flow{p.proto, p.dst, p.src, p.dport, p.sport}
	case isEchoReply(p.proto, p.icmpType):
		k = flow{p.proto, p.dst, p.src, p.sport, 0}
	default:
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.flows[k]
	if !ok || now.After(exp) {
		return false
	}
	if reply && p.proto == 6 && p.tcpFlags&(tcpFIN|tcpRST) != 0 {
		c.flows[k] = now.Add(tcpDoneTimeout)
	}
	return true
}

// Package filter is the node's packet filter: it decides, for every packet
// that arrives from the tunnel, whether it may reach this node or be
// forwarded by it. It enforces the wire.PacketFilter the control server
// compiled for this node (docs/acl.md), and it is stateful: replies to
// flows this node opened (TCP, UDP, ICMP echo) pass whatever the rules
// say, tracked with bounded state and timeouts.
//
// The filter sits between wireguard-go and the TUN device (Wrap).
// wireguard-go has already checked that a packet's source address is one
// of the sending peer's allowed addresses before the packet reaches it; the
// filter then judges the packet by its addresses, protocol and ports. A
// packet whose transport header cannot be found (a later fragment, an
// IPv6 extension header it does not walk, a truncated header) is dropped,
// never allowed.
package filter

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"weft/internal/wire"
)

// Filter decides which packets from the tunnel may pass. Its zero value
// is not usable; make one with New. Its methods are safe for concurrent
// use.
type Filter struct {
	now func() time.Time

	rules atomic.Pointer[ruleSet]
	ct    conntrack

	dropsMu sync.Mutex
	drops   map[string]uint64 // guarded by dropsMu
}

// Options configure New.
type Options struct {
	// Now returns the time; nil means time.Now.
	Now func() time.Time
	// MaxFlows bounds the flows tracked; zero means DefaultMaxFlows.
	MaxFlows int
}

// New returns a filter that allows everything until Set gives it a
// policy's filter.
func New(opts Options) *Filter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = DefaultMaxFlows
	}
	f := &Filter{now: opts.Now, drops: map[string]uint64{}}
	f.ct.init(opts.MaxFlows)
	f.rules.Store(&ruleSet{allowAll: true})
	return f
}

// ruleSet is a wire.PacketFilter made ready for matching.
type ruleSet struct {
	allowAll bool
	rules    []rule
}

type rule struct {
	srcs   []netip.Prefix
	dsts   []wire.FilterDst
	protos [256]bool
}

// Set replaces the rules. A nil filter (a server that sends none) allows
// everything, as a tailnet without a policy does.
func (f *Filter) Set(pf *wire.PacketFilter) {
	rs := &ruleSet{allowAll: pf == nil || pf.AllowAll}
	if pf != nil {
		for _, r := range pf.Rules {
			cr := rule{srcs: r.Srcs, dsts: r.Dsts}
			if len(r.Protos) == 0 {
				for _, p := range []uint8{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6} {
					cr.protos[p] = true
				}
			}
			for _, p := range r.Protos {
				cr.protos[p] = true
			}
			rs.rules = append(rs.rules, cr)
		}
	}
	f.rules.Store(rs)
}

// Inbound judges a packet that arrived from the tunnel and returns "" to
// let it pass or the reason it is dropped; a drop is counted.
func (f *Filter) Inbound(b []byte) string {
	rs := f.rules.Load()
	if rs.allowAll {
		return ""
	}
	reason := f.inbound(rs, b)
	if reason != "" {
		f.dropsMu.Lock()
		f.drops[reason]++
		f.dropsMu.Unlock()
	}
	return reason
}

func (f *Filter) inbound(rs *ruleSet, b []byte) string {
	var p packet
	if r := parse(b, &p); r != "" {
		return r
	}
	now := f.now()
	switch {
	case p.inner > 0:
		// An ICMP error passes when it is about a flow this node sent.
		var in packet
		if parse(b[p.inner:], &in) != "" || !f.ct.seen(now, &in, false) {
			return ReasonICMPError
		}
		return ""
	case f.ct.seen(now, &p, true):
		return "" // a reply to a flow this node opened
	case rs.allows(&p):
		return ""
	}
	return ReasonNoRule
}

// Outbound notes a packet this node sends into the tunnel, so that the
// replies to it pass. It never drops.
func (f *Filter) Outbound(b []byte) {
	if f.rules.Load().allowAll {
		return
	}
	var p packet
	if parse(b, &p) != "" {
		return
	}
	f.ct.track(f.now(), &p)
}

// allows reports whether a rule accepts p.
func (rs *ruleSet) allows(p *packet) bool {
	for i := range rs.rules {
		r := &rs.rules[i]
		if !r.protos[p.proto] || !containsAddr(r.srcs, p.src) {
			continue
		}
		for _, d := range r.dsts {
			if d.Net.Contains(p.dst) && (!hasPorts(p.proto) || d.Ports.Contains(p.dport)) {
				return true
			}
		}
	}
	return false
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Drops returns the packets dropped so far, by reason.
func (f *Filter) Drops() map[string]uint64 {
	f.dropsMu.Lock()
	defer f.dropsMu.Unlock()
	out := make(map[string]uint64, len(f.drops))
	for k, v := range f.drops {
		out[k] = v
	}
	return out
}

// Flows returns how many flows are tracked now.
func (f *Filter) Flows() int { return f.ct.len() }

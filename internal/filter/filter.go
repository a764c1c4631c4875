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
	// byPort indexes the rules whose every destination names single
	// ports, by port; wide are the others (ranges, "*"). A TCP or UDP
	// packet is checked against byPort[its port] and wide only.
	byPort map[uint16][]int
	wide   []int
}

type rule struct {
	srcs   netSet
	dsts   []dst
	protos [256]bool
}

type dst struct {
	net   netSet
	ports wire.PortRange
}

// netSet holds prefixes for fast matching: IPv4 ones as masked words
// (a packet's address is one AND and one compare away), IPv6 as prefixes.
type netSet struct {
	v4 []v4net
	v6 []netip.Prefix
}

type v4net struct{ addr, mask uint32 }

func makeNetSet(ps ...netip.Prefix) netSet {
	var s netSet
	for _, p := range ps {
		if p.Addr().Is4() {
			mask := ^uint32(0)
			if p.Bits() < 32 {
				mask = ^(^uint32(0) >> p.Bits())
			}
			if p.Bits() == 0 {
				mask = 0
			}
			s.v4 = append(s.v4, v4net{addr: v4word(p.Addr()) & mask, mask: mask})
		} else {
			s.v6 = append(s.v6, p)
		}
	}
	return s
}

func v4word(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// contains reports whether a is in the set.
func (s *netSet) contains(a netip.Addr) bool {
	if a.Is4() {
		w := v4word(a)
		for _, n := range s.v4 {
			if w&n.mask == n.addr {
				return true
			}
		}
		return false
	}
	for _, p := range s.v6 {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Set replaces the rules. A nil filter (a server that sends none) allows
// everything, as a tailnet without a policy does.
func (f *Filter) Set(pf *wire.PacketFilter) {
	rs := &ruleSet{allowAll: pf == nil || pf.AllowAll}
	if pf != nil {
		for _, r := range pf.Rules {
			cr := rule{srcs: makeNetSet(r.Srcs...)}
			for _, d := range r.Dsts {
				cr.dsts = append(cr.dsts, dst{net: makeNetSet(d.Net), ports: d.Ports})
			}
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
	rs.index()
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
	if p.inner > 0 {
		// An ICMP error passes when it is about a flow this node sent.
		var in packet
		if parse(b[p.inner:], &in) != "" || !f.ct.seen(f.now(), &in, false) {
			return ReasonICMPError
		}
		return ""
	}
	// The rules first: they are indexed by port and cost less than a
	// flow table lookup, which only replies need.
	if rs.allows(&p) || f.ct.seen(f.now(), &p, true) {
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

// index fills byPort and wide.
func (rs *ruleSet) index() {
	rs.byPort = map[uint16][]int{}
	for i, r := range rs.rules {
		single := true
		for _, d := range r.dsts {
			single = single && d.ports.First == d.ports.Last
		}
		if !single {
			rs.wide = append(rs.wide, i)
			continue
		}
		for _, d := range r.dsts {
			if l := rs.byPort[d.ports.First]; len(l) == 0 || l[len(l)-1] != i {
				rs.byPort[d.ports.First] = append(l, i)
			}
		}
	}
}

// allows reports whether a rule accepts p.
func (rs *ruleSet) allows(p *packet) bool {
	if !hasPorts(p.proto) {
		for i := range rs.rules {
			if rs.rules[i].accepts(p) {
				return true
			}
		}
		return false
	}
	for _, l := range [2][]int{rs.byPort[p.dport], rs.wide} {
		for _, i := range l {
			if rs.rules[i].accepts(p) {
				return true
			}
		}
	}
	return false
}

func (r *rule) accepts(p *packet) bool {
	if !r.protos[p.proto] || !r.srcs.contains(p.src) {
		return false
	}
	for j := range r.dsts {
		d := &r.dsts[j]
		if (!hasPorts(p.proto) || d.ports.Contains(p.dport)) && d.net.contains(p.dst) {
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

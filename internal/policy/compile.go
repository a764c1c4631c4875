package policy

import (
	"encoding/binary"
	"net/netip"

	"weft/internal/wire"
)

// Compiled is a policy applied to one set of nodes: each node's packet
// filter and which nodes may know about which. It is built whole by
// Compile and not changed after, so it is safe for concurrent use.
type Compiled struct {
	allowAll bool
	nodes    map[wire.NodeID]*nodeView
	// classes are the distinct (src, dst) rule bit sets; nodes that
	// share one see exactly the same others.
	classes []*nodeView
}

// nodeView is one node's share of the compiled policy.
type nodeView struct {
	filter *wire.PacketFilter
	// src and dst hold a bit per rule: the node can send as the rule's
	// source, or receive as its destination.
	src, dst []uint64
	class    int // index in Compiled.classes
}

// AllowAll is the Compiled of a tailnet with no policy: every node may
// reach and see every other.
func AllowAll() *Compiled { return &Compiled{allowAll: true} }

var allowAllFilter = &wire.PacketFilter{AllowAll: true}

// Compile applies the policy to nodes. A nil policy allows everything.
// Its cost grows with the nodes times the rules that may name each node
// (found through an index), not with nodes times all rules.
func (p *Policy) Compile(nodes []*wire.Node) *Compiled {
	if p == nil {
		return AllowAll()
	}
	c := &Compiled{nodes: make(map[wire.NodeID]*nodeView, len(nodes))}
	words := (len(p.rules) + 63) / 64
	srcIx, dstIx := newRuleIndex(), newRuleIndex()
	for i := range p.rules {
		for j := range p.rules[i].src {
			srcIx.add(&p.rules[i].src[j], i)
		}
		for j := range p.rules[i].dst {
			dstIx.add(&p.rules[i].dst[j].alias, i)
		}
	}
	// First pass: each node's source bits and each rule's sources.
	srcNets := make([][]netip.Prefix, len(p.rules))
	views := make([]*nodeView, len(nodes))
	for k, n := range nodes {
		v := &nodeView{filter: &wire.PacketFilter{}, src: make([]uint64, words), dst: make([]uint64, words)}
		views[k] = v
		cand := make([]uint64, words)
		srcIx.candidates(n, cand)
		eachBit(cand, func(i int) {
			named := false
			for j := range p.rules[i].src {
				a := &p.rules[i].src[j]
				if a.sendsFrom(n) {
					v.src[i/64] |= 1 << (i % 64)
				}
				if a.identity() && !named && a.matchesNode(n) {
					srcNets[i] = append(srcNets[i], n.Addresses...)
					named = true
				}
			}
		})
	}
	for i := range p.rules {
		for _, a := range p.rules[i].src {
			if !a.identity() {
				srcNets[i] = append(srcNets[i], a.nets...)
			}
		}
		srcNets[i] = aggregate(srcNets[i])
	}
	// Second pass: each node's filter, from the rules that may reach it.
	var scratch []netip.Prefix
	for k, n := range nodes {
		v := views[k]
		cand := make([]uint64, words)
		dstIx.candidates(n, cand)
		eachBit(cand, func(i int) {
			r := &p.rules[i]
			var dsts []wire.FilterDst
			for _, d := range r.dst {
				scratch = d.dstNets(n, scratch[:0])
				for _, net := range scratch {
					for _, pr := range d.ports {
						dsts = append(dsts, wire.FilterDst{Net: net, Ports: pr})
					}
				}
			}
			if len(dsts) == 0 {
				return
			}
			v.dst[i/64] |= 1 << (i % 64)
			if len(srcNets[i]) > 0 {
				v.filter.Rules = append(v.filter.Rules, wire.FilterRule{Srcs: srcNets[i], Dsts: dsts, Protos: r.protos})
			}
		})
		c.nodes[n.ID] = v
	}
	c.classify()
	return c
}

// classify groups nodes by their rule bits.
func (c *Compiled) classify() {
	byKey := map[string]int{}
	var key []byte
	for _, v := range c.nodes {
		key = key[:0]
		for _, w := range append(v.src, v.dst...) {
			key = binary.LittleEndian.AppendUint64(key, w)
		}
		i, ok := byKey[string(key)]
		if !ok {
			i = len(c.classes)
			byKey[string(key)] = i
			c.classes = append(c.classes, v)
		}
		v.class = i
	}
}

// classSees is CanSee between two classes.
func (c *Compiled) classSees(i, j int) bool {
	a, b := c.classes[i], c.classes[j]
	for w := range a.src {
		if a.src[w]&b.dst[w] != 0 || b.src[w]&a.dst[w] != 0 {
			return true
		}
	}
	return false
}

// ViewChanges calls fn for every pair of the nodes ids (each pair once,
// in either order) that may see each other under one compilation and not
// the other, with visible saying whether they may now. It compares classes
// of nodes rather than every pair, so its cost grows with the pairs that
// changed, not with the square of the tailnet. A node absent from a
// compilation sees no one under it.
func ViewChanges(old, cur *Compiled, ids []wire.NodeID, fn func(a, b wire.NodeID, visible bool)) {
	type combo struct{ o, n int } // class under old and cur; -1 absent, -2 allow-all
	classOf := func(c *Compiled, id wire.NodeID) int {
		if c.allowAll {
			return -2
		}
		if v := c.nodes[id]; v != nil {
			return v.class
		}
		return -1
	}
	groups := map[combo][]wire.NodeID{}
	var order []combo
	for _, id := range ids {
		k := combo{classOf(old, id), classOf(cur, id)}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], id)
	}
	sees := func(c *Compiled, i, j int) bool {
		switch {
		case i == -2 || j == -2:
			return true
		case i < 0 || j < 0:
			return false
		}
		return c.classSees(i, j)
	}
	for x, kx := range order {
		for _, ky := range order[x:] {
			was, is := sees(old, kx.o, ky.o), sees(cur, kx.n, ky.n)
			if was == is {
				continue
			}
			gx, gy := groups[kx], groups[ky]
			for i, a := range gx {
				start := 0
				if kx == ky {
					start = i + 1
				}
				for _, b := range gy[start:] {
					fn(a, b, is)
				}
			}
		}
	}
}

// Filter returns the packet filter of the node with id. A node the
// compilation did not include gets a filter that lets nothing new in.
func (c *Compiled) Filter(id wire.NodeID) *wire.PacketFilter {
	if c.allowAll {
		return allowAllFilter
	}
	if v := c.nodes[id]; v != nil {
		return v.filter
	}
	return &wire.PacketFilter{}
}

// CanSee reports whether a and b may know about each other: one may open
// a flow to the other under some rule. The relation is symmetric, since a
// node must know a peer to answer it.
func (c *Compiled) CanSee(a, b wire.NodeID) bool {
	if c.allowAll {
		return true
	}
	va, vb := c.nodes[a], c.nodes[b]
	if va == nil || vb == nil {
		return false
	}
	return c.classSees(va.class, vb.class)
}

// Rules returns how many rules the node's filter holds, for status and
// benchmarks.
func (c *Compiled) Rules(id wire.NodeID) int {
	if v := c.nodes[id]; v != nil {
		return len(v.filter.Rules)
	}
	return 0
}

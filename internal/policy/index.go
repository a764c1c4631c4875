package policy

import (
	"cmp"
	"net/netip"
	"slices"

	"weft/internal/wire"
)

// ruleIndex finds, for a node, the rules whose src (or dst) may name it,
// without looking at every rule: identity aliases are indexed by user, tag
// and node name; the few address aliases are kept in a list that is
// checked for every node.
type ruleIndex struct {
	byUser, byTag, byNode map[string][]int
	member, tagged, other []int
}

func newRuleIndex() *ruleIndex {
	return &ruleIndex{byUser: map[string][]int{}, byTag: map[string][]int{}, byNode: map[string][]int{}}
}

func (ix *ruleIndex) add(a *alias, i int) {
	switch a.kind {
	case kUser:
		ix.byUser[a.name] = append(ix.byUser[a.name], i)
	case kGroup:
		for _, u := range a.users {
			ix.byUser[u] = append(ix.byUser[u], i)
		}
		for _, n := range a.nodes {
			ix.byNode[n] = append(ix.byNode[n], i)
		}
	case kTag:
		ix.byTag[a.name] = append(ix.byTag[a.name], i)
	case kNode:
		ix.byNode[a.name] = append(ix.byNode[a.name], i)
	case kMember:
		ix.member = append(ix.member, i)
	case kTagged:
		ix.tagged = append(ix.tagged, i)
	default:
		ix.other = append(ix.other, i)
	}
}

// candidates sets in bits the rules that may name n; the caller checks
// each.
func (ix *ruleIndex) candidates(n *wire.Node, bits []uint64) {
	set := func(is []int) {
		for _, i := range is {
			bits[i/64] |= 1 << (i % 64)
		}
	}
	if len(n.Tags) == 0 && n.User != "" {
		set(ix.byUser[n.User])
		set(ix.member)
	}
	for _, t := range n.Tags {
		set(ix.byTag[t])
	}
	if len(n.Tags) > 0 {
		set(ix.tagged)
	}
	set(ix.byNode[n.Name])
	set(ix.other)
}

// eachBit calls fn for each set bit, in order.
func eachBit(bits []uint64, fn func(i int)) {
	for w, word := range bits {
		for word != 0 {
			b := 0
			for word&(1<<b) == 0 {
				b++
			}
			fn(w*64 + b)
			word &^= 1 << b
		}
	}
}

// aggregate returns the smallest list of prefixes covering exactly what
// ps cover: duplicates and prefixes inside others go, and sibling halves
// merge. Addresses given out in order collapse into a few prefixes.
func aggregate(ps []netip.Prefix) []netip.Prefix {
	if len(ps) < 2 {
		return ps
	}
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue // inside the previous one
		}
		out = append(out, p)
		for len(out) >= 2 {
			a, b := out[len(out)-2], out[len(out)-1]
			if a.Bits() != b.Bits() || a.Bits() == 0 {
				break
			}
			parent, _ := a.Addr().Prefix(a.Bits() - 1)
			if parent.Addr() != a.Addr() || !parent.Contains(b.Addr()) {
				break
			}
			out = append(out[:len(out)-2], parent)
		}
	}
	return slices.Clip(out)
}

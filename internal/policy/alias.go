package policy

import (
	"net/netip"
	"slices"
	"strings"

	"weft/internal/tailnet"
	"weft/internal/wire"
)

// kind says what an alias names.
type kind uint8

const (
	kAny      kind = iota // "*": every address
	kUser                 // "alice@": the user's untagged nodes
	kGroup                // "group:x": its members' nodes
	kTag                  // "tag:x": nodes with the tag
	kMember               // "autogroup:member": every untagged node
	kTagged               // "autogroup:tagged": every tagged node
	kInternet             // "autogroup:internet": addresses outside the tailnet and private ranges
	kNode                 // "busan": the node of that name (weft's addition)
	kPrefix               // a host, an IP or a CIDR
)

// alias is one resolved src or dst entry.
type alias struct {
	kind  kind
	name  string         // user, tag or node name
	users []string       // kGroup: member users
	nodes []string       // kGroup: member nodes
	nets  []netip.Prefix // kAny, kInternet, kPrefix
}

// identity reports whether the alias names nodes by who they are rather
// than by address.
func (a *alias) identity() bool {
	switch a.kind {
	case kUser, kGroup, kTag, kMember, kTagged, kNode:
		return true
	}
	return false
}

// matchesNode reports whether the alias names n: by identity, or by
// holding one of n's addresses.
func (a *alias) matchesNode(n *wire.Node) bool {
	switch a.kind {
	case kUser:
		return len(n.Tags) == 0 && n.User == a.name
	case kGroup:
		return len(n.Tags) == 0 && n.User != "" && slices.Contains(a.users, n.User) || slices.Contains(a.nodes, n.Name)
	case kTag:
		return slices.Contains(n.Tags, a.name)
	case kMember:
		return len(n.Tags) == 0 && n.User != ""
	case kTagged:
		return len(n.Tags) > 0
	case kNode:
		return n.Name == a.name
	}
	for _, p := range n.Addresses {
		if containsAddr(a.nets, p.Addr()) {
			return true
		}
	}
	return false
}

// sendsFrom reports whether traffic from n can match the alias as a
// source: n's own addresses, or, for address aliases, a subnet route n
// forwards from.
func (a *alias) sendsFrom(n *wire.Node) bool {
	if a.matchesNode(n) {
		return true
	}
	if a.identity() {
		return false
	}
	for _, r := range n.Routes {
		if tailnet.IsExitRoute(r) {
			continue
		}
		for _, p := range a.nets {
			if p.Overlaps(r) {
				return true
			}
		}
	}
	return false
}

// dstNets returns the part of the alias that lies on n: n's addresses for
// an identity that names n, or the overlap of the alias's networks with
// n's addresses and approved routes.
func (a *alias) dstNets(n *wire.Node, out []netip.Prefix) []netip.Prefix {
	if a.identity() {
		if a.matchesNode(n) {
			out = append(out, n.Addresses...)
		}
		return out
	}
	for _, own := range [][]netip.Prefix{n.Addresses, n.Routes} {
		for _, q := range own {
			for _, p := range a.nets {
				if p.Overlaps(q) {
					out = append(out, smaller(p, q))
				}
			}
		}
	}
	return out
}

// srcNets appends the source networks the alias stands for among nodes.
func (a *alias) srcNets(nodes []*wire.Node, out []netip.Prefix) []netip.Prefix {
	if !a.identity() {
		return append(out, a.nets...)
	}
	for _, n := range nodes {
		if a.matchesNode(n) {
			out = append(out, n.Addresses...)
		}
	}
	return out
}

func smaller(p, q netip.Prefix) netip.Prefix {
	if p.Bits() >= q.Bits() {
		return p
	}
	return q
}

func containsAddr(nets []netip.Prefix, ip netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Address ranges for "*" and autogroup:internet.
var (
	allNets = []netip.Prefix{tailnet.AllV4, tailnet.AllV6}
	// notInternet are ranges autogroup:internet leaves out: the tailnet,
	// private, loopback, link-local, multicast and ULA space.
	notInternet = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/8"),
		tailnet.V4Range,
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("224.0.0.0/3"),
		netip.MustParsePrefix("::/3"),
		netip.MustParsePrefix("fc00::/7"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("ff00::/8"),
	}
	internetNets = subtract(allNets, notInternet)
)

// subtract returns the prefixes covering what is in from but in none of
// minus.
func subtract(from, minus []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	var walk func(p netip.Prefix)
	walk = func(p netip.Prefix) {
		for _, m := range minus {
			if m.Bits() <= p.Bits() && m.Contains(p.Addr()) {
				return // p lies inside m
			}
		}
		for _, m := range minus {
			if p.Overlaps(m) {
				lo, hi := halves(p)
				walk(lo)
				walk(hi)
				return
			}
		}
		out = append(out, p)
	}
	for _, p := range from {
		walk(p)
	}
	return out
}

// halves splits p into its two halves.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits).Masked()
	b := lo.Addr().AsSlice()
	i := (bits - 1) / 8
	b[i] |= 0x80 >> ((bits - 1) % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(hiAddr, bits)
}

// userName returns the user an alias names, if it names one: "alice@" is
// user alice; "alice@example.com" is the user of that whole name.
func userName(s string) (string, bool) {
	i := strings.IndexByte(s, '@')
	if i <= 0 {
		return "", false
	}
	if i == len(s)-1 {
		return s[:i], true
	}
	return s, true
}

// Package tailnet holds the terms that the server, the node and the CLI
// must agree on: the tailnet's address range, what an exit route is, and
// which route prefixes a node may offer. Keeping them in one place is what
// makes the server refuse exactly what the node refuses, in the same words.
package tailnet

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

var (
	// V4Range is where every node's IPv4 address comes from (the CGNAT
	// range of RFC 6598). The IPv6 addresses come from a ULA /48 chosen
	// by each server.
	V4Range = netip.MustParsePrefix("100.64.0.0/10")

	// ResolverV4 is every node's own DNS resolver (MagicDNS). The server
	// never gives it to a node.
	ResolverV4 = netip.MustParseAddr("100.100.100.100")

	// AllV4 and AllV6 are the default routes an exit node offers.
	AllV4 = netip.MustParsePrefix("0.0.0.0/0")
	AllV6 = netip.MustParsePrefix("::/0")
)

// ResolverV6 is the IPv6 address of every node's own resolver in a
// tailnet whose ULA /48 holds addr (any node's IPv6 address): the /48 with
// ResolverV4 in its low 32 bits, as a node's IPv6 address carries its IPv4
// one, so no node can ever be given it. It returns the zero Addr when addr
// is not IPv6.
func ResolverV6(addr netip.Addr) netip.Addr {
	if !addr.Is6() || addr.Is4In6() {
		return netip.Addr{}
	}
	a := addr.As16()
	clear(a[6:])
	r := ResolverV4.As4()
	copy(a[12:], r[:])
	return netip.AddrFrom16(a)
}

// ExitRoutes returns the prefixes an exit node offers: both default
// routes. It returns a fresh slice each time, so callers may append.
func ExitRoutes() []netip.Prefix { return []netip.Prefix{AllV4, AllV6} }

// IsExitRoute reports whether p is a default route, which only an exit
// node offers.
func IsExitRoute(p netip.Prefix) bool { return p.IsValid() && p.Bits() == 0 }

// CheckRoute says, in words for a person, why p cannot be a route a node
// offers (a subnet route or an exit route), or returns nil. The server
// and the node both use it: a prefix must be valid, plain (no zone, no
// IPv4-mapped IPv6), canonical (no host bits set), and must not overlap
// the tailnet's own range unless it is a default route.
func CheckRoute(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("invalid route prefix")
	case p.Addr().Zone() != "" || p.Addr().Is4In6():
		return fmt.Errorf("route %v: use a plain IPv4 or IPv6 prefix", p)
	case p.Masked() != p:
		return fmt.Errorf("route %v has host bits set; did you mean %v?", p, p.Masked())
	case !IsExitRoute(p) && p.Overlaps(V4Range):
		return fmt.Errorf("route %v overlaps the tailnet's own addresses (%v); peers reach those through weft already", p, V4Range)
	}
	return nil
}

// CheckSubnetRoute is CheckRoute for a prefix given as a subnet route
// (--advertise-routes), where a default route is a mistake: exit nodes
// are offered with --advertise-exit-node.
func CheckSubnetRoute(p netip.Prefix) error {
	if IsExitRoute(p) {
		return fmt.Errorf("route %v is a default route: to offer this node as an exit node use --advertise-exit-node", p)
	}
	return CheckRoute(p)
}

// ParseRoutes parses a comma-separated list of route prefixes as a person
// types them ("192.168.1.0/24, fd00:1::/64"), the one parser behind
// `weft set --advertise-routes` and `weft admin routes`. Blank items are
// skipped and repeats dropped; an empty list is no routes, not an error.
// Each prefix must pass CheckRoute; a bare address is refused with a hint,
// since it is a common slip for a /32.
func ParseRoutes(s string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			if _, aerr := netip.ParseAddr(item); aerr == nil {
				return nil, fmt.Errorf("%q is an address, not a prefix; add /32 or /128, or write the network like 192.168.1.0/24", item)
			}
			return nil, fmt.Errorf("%q is not a CIDR prefix like 192.168.1.0/24", item)
		}
		if err := CheckRoute(p); err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

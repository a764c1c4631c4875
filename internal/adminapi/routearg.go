package adminapi

import (
	"fmt"
	"net/netip"
	"strings"

	"weft/internal/store"
	"weft/internal/tailnet"
)

// ParseRouteArg parses what a person types for a route: "exit" for both
// default routes, or a comma-separated list of canonical CIDR prefixes
// such as "192.168.1.0/24,fd00:1::/64". A bare address is not a prefix and
// is refused, as is a prefix with host bits set (with a suggestion).
func ParseRouteArg(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "exit") {
		return tailnet.ExitRoutes(), nil
	}
	var out []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			if _, aerr := netip.ParseAddr(item); aerr == nil {
				return nil, fmt.Errorf("%w: %q is an address, not a prefix; add /32 or /128, or the network's length", store.ErrInvalid, item)
			}
			return nil, fmt.Errorf("%w: %q is not \"exit\" or a CIDR prefix like 192.168.1.0/24", store.ErrInvalid, item)
		}
		if err := store.ValidatePrefix(p); err != nil {
			return nil, err
		}
		dup := false
		for _, q := range out {
			dup = dup || q == p
		}
		if !dup {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no route given; say \"exit\" or a CIDR prefix", store.ErrInvalid)
	}
	return out, nil
}

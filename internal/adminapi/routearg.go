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
// such as "192.168.1.0/24,fd00:1::/64" (tailnet.ParseRoutes). Every error
// wraps store.ErrInvalid.
func ParseRouteArg(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "exit") {
		return tailnet.ExitRoutes(), nil
	}
	out, err := tailnet.ParseRoutes(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w (or say \"exit\" for both default routes)", store.ErrInvalid, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no route given; say \"exit\" or a CIDR prefix", store.ErrInvalid)
	}
	return out, nil
}

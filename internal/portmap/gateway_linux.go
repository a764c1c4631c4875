package portmap

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// DefaultGateway returns the gateway of the IPv4 default route with the
// lowest metric in the calling thread's network namespace.
func DefaultGateway() (netip.Addr, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: list routes: %w", err)
	}
	var best netip.Addr
	bestPrio := -1
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		gw, ok := netip.AddrFromSlice(r.Gw)
		if !ok || !gw.Unmap().Is4() {
			continue
		}
		if bestPrio < 0 || r.Priority < bestPrio {
			best, bestPrio = gw.Unmap(), r.Priority
		}
	}
	if !best.IsValid() {
		return netip.Addr{}, ErrNoGateway
	}
	return best, nil
}

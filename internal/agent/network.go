package agent

import (
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"weft/internal/magicsock"
)

// hostNetwork is the host network minus the TUN device: the tunnel's own
// addresses (the tailnet's IPv4 and its per-tailnet random ULA IPv6) must
// never be published as endpoints, or peers would send WireGuard packets
// into the tunnel that carries them.
type hostNetwork struct {
	magicsock.HostNetwork
	tun string // the TUN device's name
	// tunneled, if set, guards the main sockets (guardedBind, routes.go).
	tunneled *atomic.Pointer[[]netip.Prefix]
}

var _ magicsock.Network = hostNetwork{}

// LocalAddrs implements magicsock.Network.
func (n hostNetwork) LocalAddrs() ([]netip.Addr, error) {
	addrs, err := n.HostNetwork.LocalAddrs()
	if err != nil {
		return nil, err
	}
	ifc, err := net.InterfaceByName(n.tun)
	if err != nil {
		return addrs, nil // no TUN (yet): nothing to leave out
	}
	own, err := ifc.Addrs()
	if err != nil {
		return addrs, nil
	}
	return slices.DeleteFunc(addrs, func(a netip.Addr) bool {
		for _, o := range own {
			if p, ok := o.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(p.IP); ok && ip.Unmap() == a {
					return true
				}
			}
		}
		return false
	}), nil
}

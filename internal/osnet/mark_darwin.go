//go:build darwin

package osnet

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/route"
	"golang.org/x/sys/unix"
)

// MarkControl returns the socket option weft's own sockets need so that
// an exit node's split default routes (plan.go) do not capture them:
// with a non-zero mark, the socket is bound (IP_BOUND_IF/IPV6_BOUND_IF)
// to the interface of the system's default route at the time it is
// made. The engine remakes its sockets when local addresses change, so a
// move to another network binds them anew. With mark 0 it returns nil.
func MarkControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		idx, err := defaultRouteInterface()
		if err != nil {
			// No default route: nothing to bypass; the socket works as is.
			return nil
		}
		var serr error
		err = c.Control(func(fd uintptr) {
			if network == "tcp6" || network == "udp6" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_BOUND_IF, idx)
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BOUND_IF, idx)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("osnet: binding socket to interface %d: %w", idx, serr)
		}
		return nil
	}
}

// defaultRouteInterface returns the interface index of the IPv4 default
// route (0.0.0.0/0) in the kernel's routing table. weft never adds a /0
// route on macOS, so this is never weft's own utun.
func defaultRouteInterface() (int, error) {
	rib, err := route.FetchRIB(unix.AF_INET, route.RIBTypeRoute, 0)
	if err != nil {
		return 0, fmt.Errorf("osnet: reading the routing table: %w", err)
	}
	msgs, err := route.ParseRIB(route.RIBTypeRoute, rib)
	if err != nil {
		return 0, fmt.Errorf("osnet: parsing the routing table: %w", err)
	}
	for _, m := range msgs {
		rm, ok := m.(*route.RouteMessage)
		if !ok || rm.Flags&unix.RTF_UP == 0 || rm.Flags&unix.RTF_IFSCOPE != 0 || len(rm.Addrs) <= unix.RTAX_NETMASK {
			continue
		}
		dst, ok := rm.Addrs[unix.RTAX_DST].(*route.Inet4Addr)
		if !ok || dst.IP != [4]byte{} {
			continue
		}
		if mask, ok := rm.Addrs[unix.RTAX_NETMASK].(*route.Inet4Addr); ok && mask.IP != [4]byte{} {
			continue
		}
		return rm.Index, nil
	}
	return 0, fmt.Errorf("osnet: no default route")
}

// Dialer returns a net.Dialer whose sockets carry MarkControl(mark).
func Dialer(mark uint32) *net.Dialer { return &net.Dialer{Control: MarkControl(mark)} }

// ListenConfig returns a net.ListenConfig whose sockets carry
// MarkControl(mark).
func ListenConfig(mark uint32) *net.ListenConfig {
	return &net.ListenConfig{Control: MarkControl(mark)}
}

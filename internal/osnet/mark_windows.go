//go:build windows

package osnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/windows"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"
)

// Socket options of ws2ipdef.h that golang.org/x/sys/windows lacks.
const (
	ipUnicastIF   = 31 // IP_UNICAST_IF: interface index in network byte order
	ipv6UnicastIF = 31 // IPV6_UNICAST_IF: interface index in host byte order
)

// MarkControl returns the socket option weft's own sockets need so that
// an exit node's split default routes (plan.go) do not capture them:
// with a non-zero mark the socket sends through the interface of the
// system's default route at the time it is made (IP_UNICAST_IF). The
// engine remakes its sockets when local addresses change. With mark 0 it
// returns nil.
func MarkControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		v6 := network == "tcp6" || network == "udp6"
		idx, err := DefaultRouteInterface(v6)
		if err != nil {
			return nil // no default route: nothing to bypass
		}
		var serr error
		err = c.Control(func(fd uintptr) {
			h := windows.Handle(fd)
			if v6 {
				serr = windows.SetsockoptInt(h, windows.IPPROTO_IPV6, ipv6UnicastIF, int(idx))
				return
			}
			var be [4]byte
			binary.BigEndian.PutUint32(be[:], idx)
			serr = windows.SetsockoptInt(h, windows.IPPROTO_IP, ipUnicastIF, int(binary.NativeEndian.Uint32(be[:])))
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

// DefaultRouteInterface returns the interface index of the default route
// (a /0) with the lowest metric. weft never adds a /0 route on Windows,
// so this is never weft's own adapter.
func DefaultRouteInterface(v6 bool) (uint32, error) {
	fam := winipcfg.AddressFamily(windows.AF_INET)
	if v6 {
		fam = windows.AF_INET6
	}
	rows, err := winipcfg.GetIPForwardTable2(fam)
	if err != nil {
		return 0, fmt.Errorf("osnet: reading the routing table: %w", err)
	}
	var best uint32
	bestMetric := ^uint32(0)
	for _, r := range rows {
		if r.DestinationPrefix.PrefixLength != 0 || r.Loopback {
			continue
		}
		if r.Metric < bestMetric {
			best, bestMetric = r.InterfaceIndex, r.Metric
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("osnet: no default route")
	}
	return best, nil
}

// Dialer returns a net.Dialer whose sockets carry MarkControl(mark).
func Dialer(mark uint32) *net.Dialer { return &net.Dialer{Control: MarkControl(mark)} }

// ListenConfig returns a net.ListenConfig whose sockets carry
// MarkControl(mark).
func ListenConfig(mark uint32) *net.ListenConfig {
	return &net.ListenConfig{Control: MarkControl(mark)}
}

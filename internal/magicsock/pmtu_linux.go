package magicsock

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// PathMTU implements pathMTUer: it connects a UDP socket carrying mark
// (so it takes the route weft's own sockets take, not the tunnel) to dst,
// which sends nothing, and reads the route's MTU as the kernel knows it
// (IP_MTU, IPV6_MTU).
func (HostNetwork) PathMTU(dst netip.AddrPort, mark uint32) (int, error) {
	a := dst.Addr().Unmap()
	fam, level, opt := unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: a.As16()}
	if a.Is4() {
		fam, level, opt = unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: a.As4()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("magicsock: path MTU socket: %w", err)
	}
	defer unix.Close(fd)
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return 0, fmt.Errorf("magicsock: path MTU socket: SO_MARK: %w", err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		return 0, fmt.Errorf("magicsock: path MTU toward %v: %w", dst, err)
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return 0, fmt.Errorf("magicsock: path MTU toward %v: %w", dst, err)
	}
	return mtu, nil
}

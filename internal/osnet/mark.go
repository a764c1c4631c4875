//go:build linux

package osnet

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// MarkControl returns a Control function for net.Dialer and
// net.ListenConfig that sets SO_MARK=mark on every socket before it
// connects or binds. weft marks its own sockets (control, relays, the
// WireGuard/discovery UDP socket) so that the exit-node policy rule
// "not fwmark mark lookup table" lets them bypass the tunnel instead of
// looping into it. Setting SO_MARK needs CAP_NET_ADMIN; without it the
// socket is refused with the error, because an unmarked socket would
// silently loop through the exit node.
func MarkControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return fmt.Errorf("osnet: mark socket: %w", err)
		}
		if serr != nil {
			return fmt.Errorf("osnet: set SO_MARK=%#x on %s socket (needs CAP_NET_ADMIN): %w", mark, network, serr)
		}
		return nil
	}
}

// Dialer returns a net.Dialer whose sockets carry SO_MARK=mark, and whose
// name lookups (the pure-Go resolver) also use marked sockets, so resolving
// the control server's name does not go through the exit node either.
func Dialer(mark uint32) *net.Dialer {
	ctl := MarkControl(mark)
	inner := &net.Dialer{Control: ctl}
	return &net.Dialer{
		Control: ctl,
		Resolver: &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
				return inner.DialContext(ctx, network, address)
			},
		},
	}
}

// ListenConfig returns a net.ListenConfig whose sockets carry SO_MARK=mark,
// for UDP sockets weft opens itself (STUN probes, the path-finding socket
// when it is not marked through its own SetMark).
func ListenConfig(mark uint32) *net.ListenConfig {
	return &net.ListenConfig{Control: MarkControl(mark)}
}

// SocketMark reads SO_MARK from a connection's socket; tests and health
// checks use it to confirm a socket is really marked.
func SocketMark(c syscall.Conn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("osnet: socket mark: %w", err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
	}); err != nil {
		return 0, fmt.Errorf("osnet: socket mark: %w", err)
	}
	if gerr != nil {
		return 0, fmt.Errorf("osnet: getsockopt SO_MARK: %w", gerr)
	}
	return uint32(v), nil
}

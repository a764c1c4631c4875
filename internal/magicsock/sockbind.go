package magicsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// controlFor returns the Control function (net.ListenConfig's) a socket
// needs while the bind's mark is mark; nil means none. markControl is the
// host's: osnet.MarkControl for a non-zero mark.
type controlFor func(mark uint32) func(network, address string, c syscall.RawConn) error

// sockBind is a conn.Bind over UDP sockets weft opens itself, one per
// address family on one port, as wireguard-go's StdNetBind opens them.
// It exists for macOS: there StdNetBind ignores SetMark and offers no way
// to reach its sockets, so an exit node's split default routes would
// carry the WireGuard packets to peers' direct endpoints into the tunnel.
// sockBind makes its sockets through a net.ListenConfig whose Control is
// control(mark), and on SetMark applies control(mark) to the sockets
// already open; on macOS that binds them to the default route's interface
// (osnet.MarkControl, IP_BOUND_IF/IPV6_BOUND_IF), as every other socket
// of weft's is.
//
// It is plain Go over net.UDPConn, so it builds and its tests run
// everywhere; only macOS uses it (newHostBind). It reads and writes one
// datagram per system call (BatchSize 1, as StdNetBind does outside
// Linux), and its receive functions can be woken without a datagram
// (ReadWaker), which matters where the sockets are bound to an
// interface that is not loopback.
type sockBind struct {
	control controlFor

	// socks is the open sockets, IPv4's first; nil while closed. It is
	// replaced (under mu) only by Open and Close, and read without a
	// lock by Send.
	socks atomic.Pointer[[]*bindSock]

	// mu serialises Open, Close and SetMark, and guards mark.
	mu   sync.Mutex
	mark uint32
}

var (
	_ conn.Bind = (*sockBind)(nil)
	_ ReadWaker = (*sockBind)(nil)
)

// newSockBind returns a closed sockBind. control may be nil.
func newSockBind(control controlFor) *sockBind {
	if control == nil {
		control = func(uint32) func(string, string, syscall.RawConn) error { return nil }
	}
	return &sockBind{control: control}
}

// bindSock is one of a sockBind's sockets.
type bindSock struct {
	network string // "udp4" or "udp6"
	c       *net.UDPConn
	// wakes counts wake calls, so that a reader clearing the deadline
	// one wake set can tell whether another came meanwhile.
	wakes atomic.Uint64
}

// socketBuffer is the receive and send buffer each socket asks for, the
// size StdNetBind asks for (the most a default macOS allows); the kernel
// may give less.
const socketBuffer = 7 << 20

// Open implements conn.Bind: an IPv4 and an IPv6 socket on port, or on
// one port of the kernel's choosing for 0. A family the host lacks is
// left out; with neither, Open fails.
func (b *sockBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.socks.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	ctl := b.control(b.mark)
	var socks []*bindSock
	var actual uint16
	var err error
	for tries := 0; ; tries++ {
		socks, actual, err = listenPair(ctl, port)
		// The port IPv4 got may be taken for IPv6: try another.
		if port != 0 || !errors.Is(err, syscall.EADDRINUSE) || tries == 100 {
			break
		}
	}
	if err != nil {
		return nil, 0, err
	}
	fns := make([]conn.ReceiveFunc, len(socks))
	for i, s := range socks {
		if s.network == "udp4" {
			fns[i] = b.makeReceiveIPv4(s)
		} else {
			fns[i] = b.makeReceiveIPv6(s)
		}
	}
	b.socks.Store(&socks)
	return fns, actual, nil
}

// listenPair opens the IPv4 socket on port, then the IPv6 one on the port
// IPv4 got, with Control ctl.
func listenPair(ctl func(string, string, syscall.RawConn) error, port uint16) ([]*bindSock, uint16, error) {
	var socks []*bindSock
	for _, network := range []string{"udp4", "udp6"} {
		s, got, err := listenSock(ctl, network, port)
		if errors.Is(err, syscall.EAFNOSUPPORT) {
			continue
		}
		if err != nil {
			for _, s := range socks {
				s.c.Close()
			}
			return nil, 0, fmt.Errorf("magicsock: open %s socket on port %d: %w", network, port, err)
		}
		socks, port = append(socks, s), got
	}
	if len(socks) == 0 {
		return nil, 0, fmt.Errorf("magicsock: open sockets: the host has neither IPv4 nor IPv6: %w", syscall.EAFNOSUPPORT)
	}
	return socks, port, nil
}

// listenSock opens one socket of network on port.
func listenSock(ctl func(string, string, syscall.RawConn) error, network string, port uint16) (*bindSock, uint16, error) {
	lc := net.ListenConfig{Control: ctl}
	pc, err := lc.ListenPacket(context.Background(), network, ":"+strconv.Itoa(int(port)))
	if err != nil {
		return nil, 0, err
	}
	c := pc.(*net.UDPConn)
	// Best effort, as the kernel may cap them: a smaller buffer only
	// drops more under a burst.
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
	return &bindSock{network: network, c: c}, c.LocalAddr().(*net.UDPAddr).AddrPort().Port(), nil
}

// makeReceiveIPv4 and makeReceiveIPv6 return s's receive function. Their
// names end in the family so that the function's PrettyName is "v4" or
// "v6", as StdNetBind's are, which familyBind's onlyFamily reads.
func (b *sockBind) makeReceiveIPv4(s *bindSock) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return s.receive(bufs, sizes, eps)
	}
}

func (b *sockBind) makeReceiveIPv6(s *bindSock) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return s.receive(bufs, sizes, eps)
	}
}

// receive reads one datagram into bufs[0]. After Close it returns
// net.ErrClosed; a wake (WakeReads) ends it with an empty batch.
func (s *bindSock) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	n, src, err := s.c.ReadFromUDPAddrPort(bufs[0])
	if errors.Is(err, os.ErrDeadlineExceeded) {
		seen := s.wakes.Load()
		_ = s.c.SetReadDeadline(time.Time{})
		if s.wakes.Load() != seen {
			// Another wake came while this one was cleared: keep
			// it for the next read.
			_ = s.c.SetReadDeadline(wakeDeadline)
		}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	eps[0] = &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(src.Addr().Unmap(), src.Port())}
	return 1, nil
}

// wakeDeadline is a read deadline long past: it ends a blocked read now.
var wakeDeadline = time.Unix(1, 0)

// WakeReads implements ReadWaker: a read deadline in the past on every
// socket ends each blocked read with an empty batch, and a read not
// blocked now returns one at once.
func (b *sockBind) WakeReads() bool {
	if socks := b.socks.Load(); socks != nil {
		for _, s := range *socks {
			s.wakes.Add(1)
			_ = s.c.SetReadDeadline(wakeDeadline)
		}
	}
	return true
}

// Close implements conn.Bind. Blocked receive functions return
// net.ErrClosed.
func (b *sockBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	socks := b.socks.Swap(nil)
	if socks == nil {
		return nil
	}
	var errs []error
	for _, s := range *socks {
		errs = append(errs, s.c.Close())
	}
	return errors.Join(errs...)
}

// SetMark implements conn.Bind: it applies control(mark) to the open
// sockets, and sockets Open makes later get it from the start. On macOS a
// non-zero mark binds them to the interface the default route has now,
// so calling it again after the default route moved binds them anew
// (Conn.Rebind does). Mark 0 leaves open sockets as they are (there is no
// Control for it; weft's mark does not change while it runs) and makes
// the next Open's sockets unbound.
func (b *sockBind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mark = mark
	ctl := b.control(mark)
	socks := b.socks.Load()
	if ctl == nil || socks == nil {
		return nil
	}
	var errs []error
	for _, s := range *socks {
		rc, err := s.c.SyscallConn()
		if err == nil {
			err = ctl(s.network, s.c.LocalAddr().String(), rc)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("magicsock: mark %s socket: %w", s.network, err))
		}
	}
	return errors.Join(errs...)
}

// Send implements conn.Bind: from the socket of the destination's family.
func (b *sockBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	se, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	dst := netip.AddrPortFrom(se.Addr().Unmap(), se.Port())
	network := "udp6"
	if dst.Addr().Is4() {
		network = "udp4"
	}
	socks := b.socks.Load()
	if socks == nil {
		return net.ErrClosed
	}
	for _, s := range *socks {
		if s.network != network {
			continue
		}
		for _, buf := range bufs {
			if _, err := s.c.WriteToUDPAddrPort(buf, dst); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("magicsock: no %s socket for %v: %w", network, dst, syscall.EAFNOSUPPORT)
}

// ParseEndpoint implements conn.Bind: "ip:port" as a StdNetEndpoint, the
// endpoint type the rest of magicsock reads.
func (b *sockBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("magicsock: endpoint %q: %w", s, err)
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

// BatchSize implements conn.Bind: one datagram per read and per write.
func (b *sockBind) BatchSize() int { return 1 }

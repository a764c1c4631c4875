package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"weft/internal/osnet"
	"weft/internal/tailnet"
)

// HostDialer opens host sockets.
type HostDialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

type plainDialer struct{}

func (plainDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

const (
	// dialTimeout bounds the host-side dial of a forwarded TCP flow; the
	// peer's SYN waits meanwhile and gets a reset if it fails.
	dialTimeout = 10 * time.Second
	// udpIdle ends a forwarded UDP flow nothing crossed for this long,
	// like a NAT's UDP mapping.
	udpIdle = 60 * time.Second
	// maxUDPFlows bounds the host sockets UDP forwarding may hold open.
	maxUDPFlows = 4096
	// maxTCPInFlight bounds connections waiting for their host-side dial.
	maxTCPInFlight = 1024
)

// verdict is what becomes of a flow a peer opens.
type verdict int

const (
	refuse      verdict = iota
	toLocalhost         // to this node's own tailnet address: the same port on localhost
	toHost              // exit node or subnet route: re-originated from a host socket
)

// decide is the forwarding policy for a flow to dst under cfg: the node's
// own addresses go to localhost; an exit node forwards anything outside
// the tailnet, a subnet router what lies in its advertised routes; other
// tailnet nodes and addresses a host must never originate to from outside
// (loopback, link-local, multicast, unspecified) are refused.
func decide(cfg *osnet.Config, dst netip.Addr) verdict {
	dst = dst.Unmap()
	if slices.ContainsFunc(cfg.Addresses, func(p netip.Prefix) bool { return p.Addr() == dst }) {
		return toLocalhost
	}
	if !dst.IsValid() || dst.IsLoopback() || dst.IsUnspecified() || dst.IsMulticast() ||
		dst.IsLinkLocalUnicast() || dst.IsInterfaceLocalMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return refuse
	}
	in := func(ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(dst) })
	}
	if in(cfg.AdvertiseRoutes) {
		return toHost
	}
	if cfg.AdvertiseExitNode && !in(cfg.TailnetRoutes) && !tailnet.V4Range.Contains(dst) {
		return toHost
	}
	return refuse
}

// target is where the host socket for a flow to dst connects, and false
// when the flow is refused.
func (s *Stack) target(dst netip.AddrPort) (netip.AddrPort, bool) {
	switch decide(s.cfg.Load(), dst.Addr()) {
	case toLocalhost:
		lo := netip.IPv6Loopback()
		if dst.Addr().Unmap().Is4() {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		return netip.AddrPortFrom(lo, dst.Port()), true
	case toHost:
		return netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), true
	}
	return netip.AddrPort{}, false
}

func (s *Stack) installForwarders() {
	tf := tcp.NewForwarder(s.st, 0, maxTCPInFlight, s.handleTCP)
	s.st.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s.st, s.handleUDP)
	s.st.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// handleTCP runs on its own goroutine for each SYN: it dials the host side
// first, so a closed port answers the peer with a reset as a real host's
// would, and then splices the two connections.
func (s *Stack) handleTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	src, dst := addrPort(id.RemoteAddress, id.RemotePort), addrPort(id.LocalAddress, id.LocalPort)
	to, ok := s.target(dst)
	if !ok {
		s.log.Debug("refused TCP flow", "src", src, "dst", dst)
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	out, err := s.host.DialContext(ctx, "tcp", to.String())
	cancel()
	if err != nil {
		s.log.Debug("forwarded TCP flow: host dial failed", "src", src, "dst", dst, "to", to, "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, e := r.CreateEndpoint(&wq)
	if e != nil {
		out.Close()
		r.Complete(true)
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	s.splice(gonet.NewTCPConn(&wq, ep), out)
}

// halfCloser is a connection that can end its sending side alone.
type halfCloser interface{ CloseWrite() error }

// splice copies both ways until both sides are done or the stack closes;
// an end of stream on one side is passed on as a half-close.
func (s *Stack) splice(a, b net.Conn) {
	stop := context.AfterFunc(s.ctx, func() { a.Close(); b.Close() })
	defer stop()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok {
			hc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// handleUDP runs in the stack's receive path for the first datagram of a
// flow: it creates the flow's endpoint (which takes that datagram) and
// leaves the host side to a goroutine.
func (s *Stack) handleUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	src, dst := addrPort(id.RemoteAddress, id.RemotePort), addrPort(id.LocalAddress, id.LocalPort)
	to, ok := s.target(dst)
	if !ok {
		s.log.Debug("refused UDP flow", "src", src, "dst", dst)
		return
	}
	if s.udpFlows.Add(1) > maxUDPFlows {
		s.udpFlows.Add(-1)
		s.log.Debug("too many UDP flows; dropped", "src", src, "dst", dst)
		return
	}
	var wq waiter.Queue
	ep, e := r.CreateEndpoint(&wq)
	if e != nil {
		s.udpFlows.Add(-1)
		return
	}
	in := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer s.udpFlows.Add(-1)
		ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
		out, err := s.host.DialContext(ctx, "udp", to.String())
		cancel()
		if err != nil {
			s.log.Debug("forwarded UDP flow: host socket failed", "src", src, "dst", dst, "err", err)
			in.Close()
			return
		}
		s.relayUDP(in, out, udpIdle)
	}()
}

// relayUDP copies datagrams both ways until neither way carried one for
// idle, or the stack closes.
func (s *Stack) relayUDP(a, b net.Conn, idle time.Duration) {
	stop := context.AfterFunc(s.ctx, func() { a.Close(); b.Close() })
	defer stop()
	var last atomic.Int64 // unix nanos of the last datagram either way
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		defer a.Close()
		defer b.Close()
		buf := make([]byte, 64<<10)
		for {
			src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
			n, err := src.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other way is busy
				}
				return
			}
			if err != nil {
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// Package stunserver answers STUN Binding requests (RFC 8489) so a node can
// learn the public address:port its NAT gives it. It is embedded in
// `weft server` and `weft relay`, and runs standalone as `weft stun`.
//
// The server is deliberately tiny: it answers Binding requests with an
// XOR-MAPPED-ADDRESS and ignores every other packet, so it holds no state
// per client and its work per packet is bounded by the packet's size.
package stunserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/pion/stun/v3"
)

// maxPacket bounds what one read accepts. A Binding request is 20 bytes
// plus a few small attributes; anything longer than a datagram on a
// normal path is not a request we want to parse.
const maxPacket = 1500

// Server answers STUN Binding requests on one or more packet conns. The
// zero value is ready to use.
type Server struct {
	// Logger receives start/stop and error lines, never a line per
	// packet. Nil discards.
	Logger *slog.Logger

	mu     sync.Mutex
	conns  map[net.PacketConn]struct{} // conns being served; guarded by mu
	closed bool                        // Close was called; guarded by mu
}

// ErrServerClosed is returned by ListenAndServe when Close was called
// before it could start.
var ErrServerClosed = errors.New("stunserver: server closed")

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// ListenAndServe listens on the UDP address addr (such as ":3478") and
// serves it until ctx is done or Close is called, when it returns nil.
//
// A wildcard host (":3478") is served by two sockets, one IPv4 and one
// IPv6-only, so that every answer can leave from the address its request
// was sent to (see replyConn); "0.0.0.0:3478" serves IPv4 only and
// "[::]:3478" IPv6 only. When the host has no IPv6, the wildcard serves
// IPv4 alone.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pcs, err := listen(ctx, addr)
	if err != nil {
		return err
	}
	errc := make(chan error, len(pcs))
	for _, pc := range pcs {
		go func() { errc <- s.Serve(ctx, pc) }()
	}
	var first error
	for range pcs {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.Close() // one socket failing stops the others
		}
	}
	return first
}

// listen opens the sockets ListenAndServe serves for addr.
func listen(ctx context.Context, addr string) ([]net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("stunserver: listen %s: %w", addr, err)
	}
	var lc net.ListenConfig
	one := func(network, a string) (net.PacketConn, error) {
		pc, err := lc.ListenPacket(ctx, network, a)
		if err != nil {
			return nil, fmt.Errorf("stunserver: listen %s: %w", a, err)
		}
		return pc, nil
	}
	switch host {
	case "":
		v4, err := one("udp4", net.JoinHostPort("0.0.0.0", port))
		if err != nil {
			return nil, err
		}
		// Port 0 asks for any port: the IPv6 socket takes the one the
		// IPv4 socket got, so the server has one port.
		p6 := fmt.Sprint(v4.LocalAddr().(*net.UDPAddr).Port)
		v6, err := one("udp6", net.JoinHostPort("::", p6))
		if err != nil {
			return []net.PacketConn{v4}, nil
		}
		return []net.PacketConn{v4, v6}, nil
	case "0.0.0.0":
		pc, err := one("udp4", addr)
		return []net.PacketConn{pc}, err
	case "::":
		pc, err := one("udp6", addr)
		return []net.PacketConn{pc}, err
	default:
		pc, err := one("udp", addr)
		return []net.PacketConn{pc}, err
	}
}

// Serve answers STUN Binding requests arriving on pc until ctx is done or
// Close is called, then closes pc and returns nil. Serve owns pc: the
// caller must not read from it. A read error other than the close returns
// that error (wrapped) after closing pc.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	if !s.track(pc) {
		pc.Close()
		return ErrServerClosed
	}
	defer s.untrack(pc)
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer pc.Close()

	log := s.logger().With("addr", pc.LocalAddr().String())
	log.Info("stun server listening")
	defer log.Info("stun server stopped")

	rc := newReplyConn(pc)
	buf := make([]byte, maxPacket)
	var req, resp stun.Message
	for {
		n, src, local, err := rc.readFrom(buf)
		if err != nil {
			if ctx.Err() != nil || s.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("stunserver: read: %w", err)
		}
		if !answer(&req, &resp, buf[:n], src) {
			continue
		}
		// A failed write is the client's problem (gone, unreachable);
		// it must not stop the server for everyone else.
		_ = rc.writeTo(resp.Raw, local, src)
	}
}

// Close stops every Serve call on s and makes later ones return
// ErrServerClosed at once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for pc := range s.conns {
		pc.Close()
	}
	return nil
}

func (s *Server) track(pc net.PacketConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.PacketConn]struct{})
	}
	s.conns[pc] = struct{}{}
	return true
}

func (s *Server) untrack(pc net.PacketConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, pc)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Reply returns the answer to pkt received from src, or nil when pkt is
// not a STUN Binding request (or src is not an address one can answer).
// It is for callers that demultiplex STUN from their own socket; Serve
// uses the same logic.
func Reply(pkt []byte, src netip.AddrPort) []byte {
	var req, resp stun.Message
	if !answer(&req, &resp, pkt, src) {
		return nil
	}
	return resp.Raw
}

// answer decodes pkt into req and, when it is a Binding request, builds
// the success response into resp. Both messages are reused across packets
// by Serve, so the steady state allocates little.
func answer(req, resp *stun.Message, pkt []byte, src netip.AddrPort) bool {
	if !src.IsValid() || src.Port() == 0 || src.Addr().IsUnspecified() {
		return false
	}
	if !stun.IsMessage(pkt) {
		return false
	}
	req.Reset()
	req.Raw = append(req.Raw[:0], pkt...)
	if err := req.Decode(); err != nil {
		return false
	}
	if req.Type != stun.BindingRequest {
		return false
	}
	// A request that carries a FINGERPRINT must carry a correct one:
	// otherwise it is probably another protocol that happens to look
	// like STUN.
	if req.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(req); err != nil {
			return false
		}
	}
	// An IPv4 client reaching a dual-stack socket shows up as a mapped
	// IPv6 address; it wants to learn its IPv4 address.
	//
	// The answer carries only what the client needs: its address, and a
	// FINGERPRINT only if the request had one. A forged source address
	// thus gets at most 12 (IPv4) or 24 (IPv6) bytes more than was sent,
	// which makes the server a poor amplifier; no SOFTWARE attribute.
	ip := src.Addr().Unmap()
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ip.AsSlice(), Port: int(src.Port())},
	}
	if req.Contains(stun.AttrFingerprint) {
		setters = append(setters, stun.Fingerprint)
	}
	return resp.Build(setters...) == nil
}

// addrPortOf converts a net.Addr from a generic PacketConn.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.AddrPort{}
		}
		return ap
	}
}

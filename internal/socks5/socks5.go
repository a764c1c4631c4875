// Package socks5 is a SOCKS5 server (RFC 1928) for userspace networking
// mode: applications that cannot reach the tailnet through a TUN device
// point their SOCKS5 setting at the daemon, which dials for them through
// the userspace stack. It speaks CONNECT without authentication, the part
// browsers, curl and ssh use; the listener should stay on localhost.
package socks5

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
	"weft/internal/netutil"
)

// Protocol numbers from RFC 1928.
const (
	version5       = 5
	methodNone     = 0
	methodRefused  = 0xff
	cmdConnect     = 1
	atypIPv4       = 1
	atypDomain     = 3
	atypIPv6       = 4
	repOK          = 0
	repFailure     = 1
	repNetUnreach  = 3
	repHostUnreach = 4
	repRefused     = 5
	repCmdNotSupp  = 7
	repAtypNotSupp = 8
)

// handshakeTimeout bounds how long a client may take to say where it
// wants to go.
const handshakeTimeout = 10 * time.Second

// Server answers SOCKS5 clients.
type Server struct {
	// Dial opens the connection a client asks for; address is host:port
	// with host a name or an IP literal.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Logger gets one debug line per failed request; nil discards.
	Logger *slog.Logger
}

// Serve answers clients on ln until ctx ends or ln fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := netutil.ServeConns(ctx, ln, s.serveConn); err != nil {
		return fmt.Errorf("socks5: %w", err)
	}
	return nil
}

// errCommand and errAddrType are requests the server understands but does
// not serve; they get their own reply codes.
var (
	errCommand  = errors.New("socks5: only CONNECT is supported")
	errAddrType = errors.New("socks5: unknown address type")
)

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReader(c)
	ok, err := readGreeting(br)
	if err != nil {
		log.Debug("socks5 greeting", "client", c.RemoteAddr(), "err", err)
		return
	}
	if !ok {
		c.Write([]byte{version5, methodRefused})
		return
	}
	if _, err := c.Write([]byte{version5, methodNone}); err != nil {
		return
	}
	addr, err := ReadRequest(br)
	switch {
	case errors.Is(err, errCommand):
		reply(c, repCmdNotSupp)
		return
	case errors.Is(err, errAddrType):
		reply(c, repAtypNotSupp)
		return
	case err != nil:
		log.Debug("socks5 request", "client", c.RemoteAddr(), "err", err)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	out, err := s.Dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		log.Debug("socks5 dial", "client", c.RemoteAddr(), "dst", addr, "err", err)
		reply(c, replyCode(err))
		return
	}
	defer out.Close()
	if err := reply(c, repOK); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.Close(); out.Close() })
	defer stop()
	netutil.Splice(c, br, out) // br: what the client sent past the request, then the rest
}

// readGreeting reads the client's method list and reports whether "no
// authentication" is among them.
func readGreeting(r io.Reader) (bool, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return false, fmt.Errorf("socks5: greeting: %w", err)
	}
	if h[0] != version5 {
		return false, fmt.Errorf("socks5: version %d, want 5", h[0])
	}
	methods := make([]byte, h[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return false, fmt.Errorf("socks5: greeting methods: %w", err)
	}
	for _, m := range methods {
		if m == methodNone {
			return true, nil
		}
	}
	return false, nil
}

// ReadRequest reads a client's request and returns the host:port it asks
// to CONNECT to.
func ReadRequest(r io.Reader) (string, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", fmt.Errorf("socks5: request: %w", err)
	}
	if h[0] != version5 {
		return "", fmt.Errorf("socks5: request version %d, want 5", h[0])
	}
	var host string
	switch h[3] {
	case atypIPv4, atypIPv6:
		b := make([]byte, 4)
		if h[3] == atypIPv6 {
			b = make([]byte, 16)
		}
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("socks5: request address: %w", err)
		}
		ip, _ := netip.AddrFromSlice(b)
		host = ip.String()
	case atypDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return "", fmt.Errorf("socks5: request name: %w", err)
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("socks5: request name: %w", err)
		}
		if !validName(b) {
			return "", fmt.Errorf("socks5: %q is not a host name", b)
		}
		host = string(b)
	default:
		return "", fmt.Errorf("%w %d", errAddrType, h[3])
	}
	var p [2]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return "", fmt.Errorf("socks5: request port: %w", err)
	}
	if h[1] != cmdConnect {
		return "", fmt.Errorf("%w (command %d)", errCommand, h[1])
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(p[:])))), nil
}

// validName reports whether b looks like a DNS name: letters, digits,
// hyphens, underscores and dots, nothing that could confuse host:port.
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// reply sends a reply with code rep and an all-zero bound address.
func reply(w io.Writer, rep byte) error {
	_, err := w.Write([]byte{version5, rep, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

// replyCode maps a dial error to the reply a client can act on.
func replyCode(err error) byte {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return repRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return repNetUnreach
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, context.DeadlineExceeded):
		return repHostUnreach
	}
	return repFailure
}

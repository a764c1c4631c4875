package noiseconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"weft/internal/key"
	"weft/internal/netutil"
	"weft/internal/wire"
)

const (
	// UpgradeProtocol is the value of the Upgrade header that asks for the
	// control channel. Plain-HTTP reverse proxies pass it through like any
	// other protocol upgrade.
	UpgradeProtocol = "weft-control/1"
	// Path is the HTTP path of the control channel, relative to the server
	// URL.
	Path = "/control"
	// DefaultHandshakeTimeout bounds the upgrade and handshake.
	DefaultHandshakeTimeout = 10 * time.Second
)

// Server accepts control channels on an HTTP handler.
type Server struct {
	// Key is the server's long-term static key. Required.
	Key key.MachinePrivate
	// Version is the protocol version spoken; zero means
	// wire.ProtocolVersion.
	Version int
	// HandshakeTimeout bounds the handshake; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// ErrNotUpgrade: the request did not ask for the control protocol.
var ErrNotUpgrade = errors.New("noiseconn: request is not a weft-control upgrade")

// Accept takes over an HTTP request that asks to upgrade to the control
// protocol, answers 101 Switching Protocols, and runs the server side of the
// handshake. On any error the connection has been answered (426 for a
// request that is not an upgrade) or closed, and the caller only logs.
func (s *Server) Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	if !headerContains(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), UpgradeProtocol) {
		w.Header().Set("Upgrade", UpgradeProtocol)
		http.Error(w, "this endpoint speaks only the weft control protocol (Upgrade: "+UpgradeProtocol+")", http.StatusUpgradeRequired)
		return nil, ErrNotUpgrade
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be upgraded", http.StatusInternalServerError)
		return nil, errors.New("noiseconn: response writer cannot hijack")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("noiseconn: hijack: %w", err)
	}
	timeout := s.HandshakeTimeout
	if timeout == 0 {
		timeout = DefaultHandshakeTimeout
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + UpgradeProtocol + "\r\nConnection: Upgrade\r\n\r\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		conn.Close()
		return nil, fmt.Errorf("noiseconn: writing 101: %w", err)
	}
	version := s.Version
	if version == 0 {
		version = wire.ProtocolVersion
	}
	nc, err := serverHandshake(conn, brw.Reader, s.Key, version)
	if err != nil {
		conn.Close()
		return nil, err
	}
	nc.r = unbuffer(brw.Reader, conn)
	_ = conn.SetDeadline(time.Time{})
	return nc, nil
}

// unbuffer returns a reader that yields what br has buffered and then reads
// conn directly, so that the bufio.Reader's buffer is not kept for the life
// of the connection.
func unbuffer(br *bufio.Reader, conn net.Conn) io.Reader {
	n := br.Buffered()
	if n == 0 {
		return conn
	}
	rest, _ := br.Peek(n)
	return io.MultiReader(bytes.NewReader(bytes.Clone(rest)), conn)
}

func headerContains(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Dialer opens control channels from a node.
type Dialer struct {
	// MachineKey is the node's machine key, its Noise static key. Required.
	MachineKey key.MachinePrivate
	// ServerKey is the server's static key, as pinned. Required.
	ServerKey key.MachinePublic
	// Version is the protocol version spoken; zero means
	// wire.ProtocolVersion.
	Version int
	// DialContext dials TCP to an address (an IP literal and port); nil
	// means a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Lookup resolves the server URL's host name; nil means the system's
	// resolver. Every address it gives runs the whole setup in a race.
	Lookup netutil.LookupFunc
	// TLSConfig is used for https server URLs; nil means defaults.
	TLSConfig *tls.Config
}

// Dial connects to the control server at serverURL (http or https), asks
// for the upgrade and runs the handshake, racing the addresses of the
// URL's host (netutil.Race). ctx bounds the whole setup; the returned
// Conn outlives it.
func (d *Dialer) Dial(ctx context.Context, serverURL string) (*Conn, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("noiseconn: server URL: %w", err)
	}
	host := u.Host
	switch u.Scheme {
	case "http":
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	case "https":
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
	default:
		return nil, fmt.Errorf("noiseconn: server URL %q: scheme must be http or https", serverURL)
	}
	addrs, err := netutil.RaceAddrs(ctx, d.Lookup, host)
	if err != nil {
		return nil, fmt.Errorf("noiseconn: %w", err)
	}
	return netutil.Race(ctx, addrs, netutil.HeadStart,
		func(ctx context.Context, addr string) (*Conn, error) { return d.dialAddr(ctx, u, addr) },
		func(c *Conn) { c.Close() })
}

// dialAddr is one address's whole setup for Dial: it connects to addr (an
// address of u's host) and runs TLS (verifying u's host name), the
// upgrade and the handshake there. Every address of the server's name
// races this whole setup, not the TCP connect alone, so that an address
// whose TCP connects but whose later packets vanish (a broken IPv6 path
// MTU, a middlebox that eats the TLS ClientHello) loses to one that works
// instead of holding the node until ctx ends.
func (d *Dialer) dialAddr(ctx context.Context, u *url.URL, addr string) (*Conn, error) {
	dial := d.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("noiseconn: %w", err)
	}
	// Until the handshake is done, ctx's end closes the connection,
	// which unblocks any read or write in progress.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	nc, err := d.handshake(ctx, conn, u)
	if !stop() {
		if nc != nil {
			nc.Close()
		}
		return nil, fmt.Errorf("noiseconn: %w", ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return nc, nil
}

func (d *Dialer) handshake(ctx context.Context, conn net.Conn, u *url.URL) (*Conn, error) {
	if u.Scheme == "https" {
		tc, err := netutil.ClientTLS(ctx, conn, d.TLSConfig, u.Hostname())
		if err != nil {
			return nil, fmt.Errorf("noiseconn: %w", err)
		}
		conn = tc
	}
	path := strings.TrimSuffix(u.Path, "/") + Path
	req := "POST " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: " + UpgradeProtocol +
		"\r\nConnection: Upgrade\r\nContent-Length: 0\r\nUser-Agent: weft\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, fmt.Errorf("noiseconn: sending upgrade request: %w", err)
	}
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
	if err != nil {
		return nil, fmt.Errorf("noiseconn: reading upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		resp.Body.Close()
		return nil, fmt.Errorf("noiseconn: server answered %s instead of switching protocols: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	version := d.Version
	if version == 0 {
		version = wire.ProtocolVersion
	}
	nc, err := clientHandshake(conn, br, d.MachineKey, d.ServerKey, version)
	if err != nil {
		return nil, err
	}
	nc.r = unbuffer(br, conn)
	return nc, nil
}

package relay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"weft/internal/netutil"
)

// dial connects to u, upgrades to the relay protocol and does the
// handshake, within the client's handshake timeout. When the relay map
// gives u's relay other addresses (altAddrs: its ipv4 and ipv6 beside the
// URL's host), every address runs that whole setup in a race
// (netutil.Race): the URL's address first, the others, families
// alternating, each netutil.HeadStart after the one before or at once
// when the ones before have failed. The first to finish the handshake
// wins and the others are closed. Racing the TCP connect alone is not
// enough: on a network where IPv6 connects but its later packets vanish
// (a broken path MTU, a middlebox that eats the TLS ClientHello) the
// IPv6 connection would win and then hang until the timeout.
func (c *Client) dial(ctx context.Context, u *url.URL) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.handshakeTimeout())
	defer cancel()
	host := hostPort(u)
	addrs := netutil.InterleaveFamilies(append([]string{host}, c.opts.altAddrs[host]...))
	return netutil.Race(ctx, addrs, netutil.HeadStart,
		func(ctx context.Context, addr string) (*clientConn, error) { return c.dialAddr(ctx, u, addr) },
		func(cc *clientConn) { cc.nc.Close() })
}

// handshakeTimeout bounds one dial: connect, TLS, upgrade and handshake
// over every address raced.
func (c *Client) handshakeTimeout() time.Duration {
	if c.opts.handshakeTimeout > 0 {
		return c.opts.handshakeTimeout
	}
	return handshakeTimeout
}

// hostPort is u's host:port, with the scheme's port when u names none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// dialAddr is one address's whole setup for dial: it connects to addr
// (u's host or another address of the same relay) and runs the handshake
// for u there (TLS verifies u's host name, the upgrade names u's host).
// It returns when ctx ends, closing the connection.
func (c *Client) dialAddr(ctx context.Context, u *url.URL, addr string) (*clientConn, error) {
	nc, err := c.opts.Dialer(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay: dialing %s: %w", addr, err)
	}
	// Closing the connection is how a cancelled context interrupts the
	// handshake's reads and writes.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	cc, err := c.handshake(ctx, nc, u)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return cc, nil
}

func (c *Client) handshake(ctx context.Context, nc net.Conn, u *url.URL) (*clientConn, error) {
	if u.Scheme == "https" {
		tc, err := netutil.ClientTLS(ctx, nc, c.opts.TLSConfig, u.Hostname())
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		nc = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	cc := &clientConn{nc: nc, br: bufio.NewReaderSize(nc, 32<<10), bw: bufio.NewWriterSize(nc, 32<<10)}
	fmt.Fprintf(cc.bw, "GET /relay HTTP/1.1\r\nHost: %s\r\nUpgrade: %s\r\nConnection: Upgrade\r\nUser-Agent: weft-relay-client/%d\r\n\r\n", u.Host, upgradeToken, ProtocolVersion)
	if err := cc.bw.Flush(); err != nil {
		return nil, fmt.Errorf("relay: sending upgrade to %s: %w", u.Host, err)
	}
	resp, err := http.ReadResponse(cc.br, nil)
	if err != nil {
		return nil, fmt.Errorf("relay: reading upgrade answer from %s: %w", u.Host, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		return nil, fmt.Errorf("relay: %s answered %q (%s), not an upgrade: is this a weft relay URL?", u.Host, resp.Status, strings.TrimSpace(string(body)))
	}
	t, b, err := readFrame(cc.br, maxHandshakePayload)
	if err != nil {
		return nil, fmt.Errorf("relay: reading server-key from %s: %w", u.Host, err)
	}
	if t != FrameServerKey {
		return nil, fmt.Errorf("%w: expected server-key, got %s", ErrBadHandshake, t)
	}
	sk, err := parseServerKey(b)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	info := clientInfo{Version: ProtocolVersion, Preferred: c.preferred}
	c.mu.Unlock()
	if c.opts.meshKey != "" {
		info.MeshProof = meshProof(c.opts.meshKey, sk.Challenge, sk.Key, c.opts.NodeKey.Public())
	}
	ci, err := sealClientInfo(c.opts.NodeKey, sk, info)
	if err != nil {
		return nil, err
	}
	if err := writeFrame(cc.bw, FrameClientInfo, ci); err != nil {
		return nil, err
	}
	if err := cc.bw.Flush(); err != nil {
		return nil, fmt.Errorf("relay: sending client-info to %s: %w", u.Host, err)
	}
	t, b, err = readFrame(cc.br, maxHandshakePayload)
	if err != nil {
		return nil, fmt.Errorf("relay: reading server-info from %s: %w", u.Host, err)
	}
	switch t {
	case FrameServerInfo:
	case FrameRefused:
		return nil, fmt.Errorf("%w by %s: %s", ErrRefused, u.Host, b)
	default:
		return nil, fmt.Errorf("%w: expected server-info, got %s", ErrBadHandshake, t)
	}
	si, err := parseServerInfo(b)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	cc.serverKey = sk.Key
	cc.info = si
	return cc, nil
}

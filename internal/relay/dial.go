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

// dial connects to u, upgrades to the relay protocol and does the handshake.
func (c *Client) dial(ctx context.Context, u *url.URL) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	nc, err := c.opts.Dialer(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("relay: dialing %s: %w", host, err)
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

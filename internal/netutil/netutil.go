// Package netutil holds the small connection-handling patterns that several
// of weft's servers and clients share: an accept loop that stops with its
// context and waits for its handlers, and the client side of TLS on a
// connection that is already dialed.
package netutil

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
)

// ServeConns accepts connections on ln and runs handle on each in its own
// goroutine until ctx ends or ln fails. It closes ln when ctx ends and
// returns only after every handle has returned, so a caller that cancels
// ctx and waits for ServeConns knows no connection is still being served.
// It returns nil when ctx ended and the accept error otherwise.
func ServeConns(ctx context.Context, ln net.Listener, handle func(context.Context, net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() { handle(ctx, c) })
	}
}

// ClientTLS runs a TLS client handshake on conn for host, using a copy of
// cfg (nil means the defaults) with ServerName set to host when cfg leaves
// it empty. On error conn is left open: the caller owns it.
func ClientTLS(ctx context.Context, conn net.Conn, cfg *tls.Config, host string) (*tls.Conn, error) {
	cfg = cfg.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", host, err)
	}
	return tc, nil
}

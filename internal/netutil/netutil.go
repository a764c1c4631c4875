// Package netutil holds the small connection-handling patterns that several
// of weft's servers and clients share: an accept loop that stops with its
// context and waits for its handlers, the two-way copy of a proxied
// connection, and the client side of TLS on a connection that is already
// dialed.
package netutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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

// Splice is a proxy's two-way copy between client c and out: what the
// client sends, read from fromC (c itself, or a buffered reader on c that
// holds bytes already read past the request), goes to out, and what out
// sends goes to c. The end of either direction is passed on as a
// half-close where the connection has CloseWrite. It returns when both
// directions have ended; the caller closes c and out.
func Splice(c net.Conn, fromC io.Reader, out net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(out, fromC)
		closeWrite(out)
		close(done)
	}()
	io.Copy(c, out)
	closeWrite(c)
	<-done
}

// closeWrite ends c's sending side where c can do that alone.
func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
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

// TrustTLS returns a TLS client configuration that trusts the system's
// roots and the PEM certificates in each of pems (a private CA's, or a
// self-signed server certificate), or nil — the system's roots alone —
// when every pem is empty. A pem that is not empty but holds no
// certificate is an error.
func TrustTLS(pems ...[]byte) (*tls.Config, error) {
	var pool *x509.CertPool
	for _, pem := range pems {
		if len(pem) == 0 {
			continue
		}
		if pool == nil {
			var err error
			if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no PEM certificate in the CA file")
		}
	}
	if pool == nil {
		return nil, nil
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// UntrustedCertHint adds to err, when a TLS peer's certificate was
// signed by an authority not trusted, what to do about it; other errors
// come back as they were.
func UntrustedCertHint(err error, hint string) error {
	var ua x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &ua) {
		return err
	}
	return fmt.Errorf("%w: the server's TLS certificate is signed by an authority this machine does not trust; %s", err, hint)
}

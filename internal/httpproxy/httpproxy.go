// Package httpproxy is an HTTP proxy for userspace networking mode:
// applications that honour http_proxy/https_proxy reach tailnet addresses
// (and, through an exit node, the internet) through the daemon, which dials
// for them through the userspace stack. It serves CONNECT for any TCP
// protocol (HTTPS included) and forwards plain HTTP requests made to an
// absolute URL. The listener should stay on localhost: it has no
// authentication.
package httpproxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"time"
	"weft/internal/netutil"
)

// Dialer opens the connections the proxy makes.
type Dialer func(ctx context.Context, network, address string) (net.Conn, error)

// Handler returns the proxy's HTTP handler.
func Handler(dial Dialer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL = r.In.URL
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			DialContext:           dial,
			Proxy:                 nil,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Debug("http proxy", "url", r.URL.String(), "err", err)
			http.Error(w, "weft proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodConnect:
			connect(w, r, dial, log)
		case r.URL.IsAbs() && r.URL.Scheme == "http":
			rp.ServeHTTP(w, r)
		default:
			http.Error(w, "weft proxy: send requests with an absolute http:// URL, or CONNECT", http.StatusBadRequest)
		}
	})
}

// connect answers CONNECT host:port by dialing it and splicing.
func connect(w http.ResponseWriter, r *http.Request, dial Dialer, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	out, err := dial(ctx, "tcp", r.Host)
	cancel()
	if err != nil {
		log.Debug("http proxy CONNECT", "dst", r.Host, "err", err)
		http.Error(w, "weft proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer out.Close()
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "weft proxy: CONNECT needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		return
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	netutil.Splice(c, brw, out) // brw: bytes the client sent early, then the rest
}

// Serve serves the proxy on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, dial Dialer, log *slog.Logger) error {
	srv := &http.Server{Handler: Handler(dial, log), ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

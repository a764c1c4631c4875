//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// WhoamiHandler answers GET / with the caller's source IP as plain text, so
// a person can see which public address their traffic leaves from.
func WhoamiHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, host)
	})
}

// ServeWhoami serves WhoamiHandler on ln until ctx is done.
func ServeWhoami(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: WhoamiHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("netlab: whoami: %w", err)
	case <-ctx.Done():
	}
	// Answers are one line each; nothing is lost by not waiting for
	// connections to drain, and the lab goes down faster.
	err := srv.Close()
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

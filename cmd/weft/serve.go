package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"weft/internal/stunserver"
)

// shutdownTimeout bounds each step of a service group's shutdown.
const shutdownTimeout = 10 * time.Second

// serviceGroup runs the long-lived parts of `weft server` and `weft relay`
// (HTTP, STUN, the admin socket, the allow-list poller) until the parent
// context ends or one of them fails, and then shuts them down in one order
// for both commands: the shutdown steps in the order given, then the
// group's context is cancelled and every goroutine started with Go is
// waited for. Nothing a command started outlives its run.
type serviceGroup struct {
	ctx    context.Context // cancelled after the shutdown steps
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards failErr
	failErr error      // the first failure
	failed  chan struct{}
	once    sync.Once
}

func newServiceGroup(parent context.Context) *serviceGroup {
	// The group's context is not a child of parent: on interrupt the
	// steps shut down in order first, and only then does everything
	// started with Go see its context end.
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &serviceGroup{ctx: ctx, cancel: cancel, failed: make(chan struct{})}
}

// Go runs fn on a goroutine the group waits for. fn gets the group's
// context and should return when it ends. An error it returns before the
// shutdown begins stops the group; http.ErrServerClosed and errors after
// the shutdown began do not count.
func (g *serviceGroup) Go(fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(g.ctx); err != nil && !errors.Is(err, http.ErrServerClosed) && g.ctx.Err() == nil {
			g.fail(err)
		}
	}()
}

func (g *serviceGroup) fail(err error) {
	g.once.Do(func() {
		g.mu.Lock()
		g.failErr = err
		g.mu.Unlock()
		close(g.failed)
	})
}

// Wait serves until parent ends or a goroutine fails, then runs each step
// in order (each with its own timeout), cancels the group's context and
// waits for every goroutine. It returns the failure that ended the group,
// or nil when parent ended.
func (g *serviceGroup) Wait(parent context.Context, log *slog.Logger, steps ...func(ctx context.Context)) error {
	var err error
	select {
	case <-parent.Done():
		log.Info("shutting down")
	case <-g.failed:
		g.mu.Lock()
		err = g.failErr
		g.mu.Unlock()
	}
	for _, step := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		step(ctx)
		cancel()
	}
	g.cancel()
	g.wg.Wait()
	return err
}

// shutdownHTTP is a shutdown step that stops hs accepting and waits for
// its requests in flight.
func shutdownHTTP(hs *http.Server) func(ctx context.Context) {
	return func(ctx context.Context) { hs.Shutdown(ctx) }
}

// goSTUN runs a STUN server on addr in sg; what wraps its error names it.
func goSTUN(sg *serviceGroup, log *slog.Logger, addr, what string) {
	stun := &stunserver.Server{Logger: log}
	sg.Go(func(ctx context.Context) error {
		if err := stun.ListenAndServe(ctx, addr); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// newLogger is the text logger of a long-running subcommand, at debug
// level with --verbose.
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Bounds on a client of weft's HTTP servers: the time to send a request's
// headers, and how long a kept-alive connection may sit idle between
// requests. Upgraded connections (control, relay) leave net/http and
// have their own deadlines.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpIdleTimeout       = 60 * time.Second
)

// newHTTPServer is the HTTP server of `weft server` and `weft relay`:
// bounded header reads and idle connections, and net/http's own
// complaints at debug level.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout, IdleTimeout: httpIdleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
}

// Package localapitest serves a localapi.Backend on a unix socket of a
// test's own: the one local API server of weft's tests, for the CLI
// against a fake daemon and for the node daemon's own tests.
package localapitest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"weft/internal/localapi"
)

// Serve serves b's local API on a fresh socket until the test ends, or
// until the returned stop is called (stop waits for the server; later
// calls do nothing). It returns the socket's path.
func Serve(t testing.TB, b localapi.Backend) (sock string, stop func()) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "weft.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		localapi.Serve(ctx, ln, localapi.Handler(b, nil))
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return sock, stop
}

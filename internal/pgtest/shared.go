package pgtest

import (
	"errors"
	"sync"
	"testing"
)

// shared is the one server of a test package that uses Main: starting a
// cluster takes about a second, a database a few milliseconds, so a
// package's tests share one cluster and each gets its own database.
// It is the only package-level state in pgtest and exists only in test
// binaries whose TestMain calls Main.
var shared struct {
	mu      sync.Mutex
	enabled bool // Main is running the package's tests
	srv     *Server
	err     error // why the shared server could not start (kept, except ErrNoBinaries)
}

// Main runs a test package's tests (call it from TestMain) and lets NewDB
// share one PostgreSQL among them, started on first use and stopped when
// the tests are done:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	defer func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.srv != nil {
			shared.srv.Close()
			shared.srv = nil
		}
		shared.enabled = false
	}()
	m.Run()
}

// NewDB returns the URL of a fresh database for t, dropped when t ends. In
// a package whose TestMain calls Main the database lives in the package's
// shared server; otherwise NewDB starts a server for t alone. It skips t
// when the PostgreSQL binaries are missing.
func NewDB(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	if !shared.enabled {
		shared.mu.Unlock()
		return Start(t, Options{}).CreateDB(t)
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = New(Options{})
	}
	srv, err := shared.srv, shared.err
	if errors.Is(err, ErrNoBinaries) {
		shared.err = nil // looked for again by the next test
	}
	shared.mu.Unlock()
	if errors.Is(err, ErrNoBinaries) {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return srv.CreateDB(t)
}

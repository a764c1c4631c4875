package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/pgtest"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// The store's tests run against every backend (forEachStore): SQLite in a
// temporary file and a real PostgreSQL started by pgtest, one cluster for
// the package and a fresh database per test. The PostgreSQL leg skips only
// when the server binaries are not installed.
func TestMain(m *testing.M) { pgtest.Main(m) }

// backend is one database the store runs on.
type backend struct {
	name string
	// newDB returns where a fresh, empty database is: a file path or a
	// libpq URL.
	newDB func(t testing.TB) string
	open  func(ctx context.Context, where string, opts Options) (*sqlStore, error)
}

var backends = []backend{
	{
		name:  "sqlite",
		newDB: func(t testing.TB) string { return filepath.Join(t.TempDir(), "weft.db") },
		open:  openSQLite,
	},
	{
		name:  "postgres",
		newDB: pgtest.NewDB,
		open:  openPostgres,
	},
}

// forEachStore runs fn as a subtest for every backend, each with a fresh
// store.
func forEachStore(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, newFixtureOn(t, b)) })
	}
}

// fixture is one test's store with a settable clock; it can be closed and
// opened again on the same database.
type fixture struct {
	t       testing.TB
	backend backend
	where   string // the database's file path or URL
	clock   *tstest.Clock
	s       Store

	// Secrets noted by buildTailnet.
	reusable, usedOneOff, apiKey string
}

// newFixture returns a fixture on SQLite, for the tests and benchmarks
// of SQLite's own properties (pragmas, file modes, kill -9).
func newFixture(t testing.TB) *fixture { return newFixtureOn(t, backends[0]) }

func newFixtureOn(t testing.TB, b backend) *fixture {
	t.Helper()
	f := &fixture{
		t:       t,
		backend: b,
		where:   b.newDB(t),
		clock:   tstest.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)),
	}
	f.open()
	t.Cleanup(func() { f.s.Close() })
	return f
}

// open opens the fixture's database, as a restarted server would.
func (f *fixture) open() {
	f.t.Helper()
	s, err := f.openAnother()
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
}

// openAnother opens a second store on the fixture's database, as a second
// server process would.
func (f *fixture) openAnother() (*sqlStore, error) {
	return f.backend.open(context.Background(), f.where, Options{Now: f.clock.Now})
}

// second opens another handle on the fixture's database (openAnother),
// closed when the test ends.
func (f *fixture) second() *sqlStore {
	f.t.Helper()
	s, err := f.openAnother()
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

func TestMigrationsIdempotent(t *testing.T) { forEachStore(t, testMigrationsIdempotent) }

func testMigrationsIdempotent(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	for range 3 {
		f.reopen()
	}
	if users, err := f.s.ListUsers(ctx); err != nil || len(users) != 1 {
		t.Fatalf("after reopens: %v, %v", users, err)
	}
	s := f.s.(*sqlStore)
	var n, max int
	if err := s.direct().QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) || max != len(migrations) {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, max, len(migrations))
	}

	t.Run("newer schema refused", func(t *testing.T) {
		if _, err := s.direct().ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, len(migrations)+1); err != nil {
			t.Fatal(err)
		}
		other, err := f.openAnother()
		if err == nil {
			other.Close()
			t.Fatal("opened a database from a newer weft")
		}
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("error %v, want ErrSchemaTooNew", err)
		}
		// The error names the database's version and the build's.
		for _, want := range []string{fmt.Sprintf("version %d", len(migrations)+1), fmt.Sprintf("up to %d", len(migrations))} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		// Nothing was changed: the running store still works.
		if _, err := f.s.ListUsers(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConcurrentOpen opens one new database from several handles at once,
// as several server processes started together would: all succeed, the
// migrations run once and everyone sees the same ULA prefix.
func TestConcurrentOpen(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			where := b.newDB(t)
			const n = 6
			stores := make([]*sqlStore, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { stores[i], errs[i] = b.open(ctx, where, Options{}) })
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("open %d: %v", i, errs[i])
				}
				defer stores[i].Close()
			}
			_, want := stores[0].AddressPrefixes()
			for i, s := range stores {
				if _, got := s.AddressPrefixes(); got != want {
					t.Fatalf("store %d has ULA %v, store 0 %v", i, got, want)
				}
			}
			var rows int
			if err := stores[0].direct().QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(migrations) {
				t.Fatalf("schema_migrations rows = %d, %v", rows, err)
			}
		})
	}
}

// TestConcurrentRegistrationsTwoHandles races registrations through two
// stores on one database, as two servers sharing it would: 100 on one
// single-use key register exactly one node; 100 on distinct keys (and one
// hostname) all register, with distinct addresses and names.
func TestConcurrentRegistrationsTwoHandles(t *testing.T) {
	forEachStore(t, testConcurrentRegistrationsTwoHandles)
}

func testConcurrentRegistrationsTwoHandles(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	other := f.second()
	handles := []Store{f.s, other}
	const racers = 100
	race := func(keys []string) []error {
		errs := make([]error, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				<-start
				_, errs[i] = handles[i%2].Register(ctx, newMachine().req(keys[i%len(keys)], "racer"))
			})
		}
		close(start)
		wg.Wait()
		return errs
	}

	t.Run("one single-use key", func(t *testing.T) {
		wins := 0
		for _, err := range race([]string{f.key(AuthKeyRequest{User: "alice"})}) {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, ErrKeyUsed):
				t.Fatalf("unexpected error %v", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d registrations won with one single-use key, want exactly 1", wins)
		}
	})
	t.Run("distinct keys", func(t *testing.T) {
		keys := make([]string, racers)
		for i := range keys {
			keys[i] = f.key(AuthKeyRequest{User: "alice"})
		}
		for i, err := range race(keys) {
			if err != nil {
				t.Fatalf("registration %d: %v", i, err)
			}
		}
		nodes, err := other.ListNodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != racers+1 {
			t.Fatalf("%d nodes, want %d", len(nodes), racers+1)
		}
		seen := map[string]wire.NodeID{}
		for _, n := range nodes {
			for _, v := range []string{n.IPv4.String(), n.IPv6.String(), "name " + n.Name} {
				if prev, dup := seen[v]; dup {
					t.Errorf("nodes %d and %d share %s", prev, n.ID, v)
				}
				seen[v] = n.ID
			}
		}
	})
}

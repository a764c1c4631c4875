//go:build unix

package control

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"weft/internal/changefeed"
	"weft/internal/key"
	"weft/internal/pgtest"
	"weft/internal/store"
	"weft/internal/wire"

	"golang.org/x/sync/errgroup"
)

// BenchmarkMapFanoutStores is BenchmarkMapFanout on three backends in one
// run, so their figures compare: SQLite with one server, PostgreSQL with
// one server, and PostgreSQL with two servers sharing it through the
// change feed (nodes split between them, so most changes cross from one
// server to the other). It also reports registrations per second into the
// store (8 at a time, through both stores for two servers).
//
//	WEFT_BENCH_NODES=1000 go test -run '^$' -bench MapFanoutStores -benchtime 20x -timeout 30m ./internal/control
//
// Server CPU is this process's (both servers), not PostgreSQL's.
func BenchmarkMapFanoutStores(b *testing.B) {
	n := benchNodes()
	for _, backend := range []string{"sqlite", "postgres-1server", "postgres-2servers"} {
		key := fmt.Sprintf("%s/%d", backend, n)
		b.Run(backend, func(b *testing.B) {
			f := storesFixtureFor(b, backend, n)
			f.measureChanges(b)
			b.ReportMetric(f.regsPerSec, "registrations/s")
			f.logFeeds(b, "after the changes")
		})
		// b.Run has made all of Go's calls for this backend: close its
		// servers and nodes now, so that the next backend's connections
		// do not come on top of these in this process (three backends
		// of 10,000 nodes each would need 30,000 descriptors).
		closeStoresFixture(key)
	}
}

// storesFixtureFor returns the backend's fixture, set up on Go's first
// call and kept for the next ones.
func storesFixtureFor(b *testing.B, backend string, n int) *storesFixture {
	storesMu.Lock()
	defer storesMu.Unlock() // also when b.Skip or b.Fatal end the call
	key := fmt.Sprintf("%s/%d", backend, n)
	if f := storeFixtures[key]; f != nil {
		return f
	}
	needFDs(b, n)
	f := newStoresFixture(b, backend, n)
	storeFixtures[key] = f
	b.Logf("%s: %d nodes registered at %.0f/s, connected in %v; %d fds open in this process; load average %s",
		backend, n, f.regsPerSec, f.setup.Round(time.Millisecond), openFDs(), loadAverage())
	return f
}

func closeStoresFixture(key string) {
	storesMu.Lock()
	defer storesMu.Unlock()
	if f := storeFixtures[key]; f != nil {
		f.close()
		delete(storeFixtures, key)
	}
}

// fdsPerNode is what one simulated node costs the benchmark process: the
// server's end of its Noise connection (the node's end is in the child,
// which inherits the same limit). fdsSpare covers the rest: PostgreSQL
// pools and feed listeners, the SQLite files, pipes, the Go runtime.
const (
	fdsPerNode = 1
	fdsSpare   = 1024
)

// needFDs makes sure this process (and the child, which inherits the
// limit) may open the descriptors n nodes need, raising RLIMIT_NOFILE's
// soft limit and, when it may (root with CAP_SYS_RESOURCE), its hard limit. It skips the
// benchmark with the reason when the limit cannot be raised far enough,
// instead of failing minutes later with "accept4: too many open files".
func needFDs(b *testing.B, n int) {
	need := uint64(n*fdsPerNode + fdsSpare)
	got, err := raiseFDLimit(need)
	if got >= need {
		return
	}
	// Go prints a skipped benchmark's reason only with -v: say it on
	// stderr too, so that a run without -v does not end silently.
	msg := fmt.Sprintf("%s: %d nodes need about %d file descriptors in this process, and the limit is %d (%v); "+
		"raise it with `ulimit -n %d`, or run as root with CAP_SYS_RESOURCE so the benchmark raises the hard limit itself",
		b.Name(), n, need, got, err, need)
	fmt.Fprintln(os.Stderr, "SKIP", msg)
	b.Skip(msg)
}

// raiseFDLimit raises RLIMIT_NOFILE to at least need if it is lower and
// returns the soft limit in force afterwards.
func raiseFDLimit(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= need {
		return lim.Cur, nil
	}
	want := lim
	want.Cur = need
	if want.Max < need {
		want.Max = need // only root may do this
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not root: the soft limit can still go up to the hard one.
		if lim.Max > lim.Cur {
			soft := lim
			soft.Cur = lim.Max
			if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &soft); err2 == nil {
				return soft.Cur, fmt.Errorf("hard limit %d kept: %w", lim.Max, err)
			}
		}
		return lim.Cur, err
	}
	return want.Cur, nil
}

// openFDs counts this process's open descriptors where /proc says so
// (Linux), or returns -1.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// loadAverage is the machine's 1-, 5- and 15-minute load average where
// /proc says so (Linux), or "unknown"; the figures mean little without it
// on a shared machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

var (
	storesMu      sync.Mutex
	storeFixtures = map[string]*storesFixture{}
	storesPG      *pgtest.Server // started on first use, closed by closeStoreFixtures
)

// storesFixture is one backend's servers and their child of nodes.
type storesFixture struct {
	benchFixture // st, child, stdin, lines (srv and hs unused)
	stores       []store.Store
	srvs         []*Server
	hss          []*httptest.Server
	regsPerSec   float64
}

func closeStoreFixtures() {
	storesMu.Lock()
	defer storesMu.Unlock()
	for _, f := range storeFixtures {
		f.close()
	}
	if storesPG != nil {
		storesPG.Close()
	}
}

func (f *storesFixture) close() {
	f.benchFixture.close() // the child first
	for _, hs := range f.hss {
		hs.Close()
	}
	for _, s := range f.srvs {
		s.Close()
	}
	for _, st := range f.stores {
		st.Close()
	}
}

// openStores opens the backend's stores: one SQLite, or one or two
// handles on a fresh PostgreSQL database.
func openStores(b *testing.B, backend, dir string) ([]store.Store, string) {
	ctx := context.Background()
	if backend == "sqlite" {
		st, err := store.Open(ctx, dir+"/weft.db", store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return []store.Store{st}, ""
	}
	if storesPG == nil {
		pg, err := pgtest.New(pgtest.Options{})
		if err != nil {
			b.Skip(err)
		}
		storesPG = pg
	}
	db := strings.ReplaceAll(backend, "-", "_")
	if err := storesPG.Exec(ctx, "postgres", `CREATE DATABASE "`+db+`"`); err != nil {
		b.Fatal(err)
	}
	url := storesPG.URL(db)
	var sts []store.Store
	for range strings.Count(backend, "2") + 1 {
		st, err := store.OpenPostgres(ctx, url, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		sts = append(sts, st)
	}
	return sts, url
}

// registerAll registers n nodes into sts, 8 at a time, spread over the
// stores, and returns registrations per second.
func registerAll(b *testing.B, sts []store.Store, n int) float64 {
	ctx := context.Background()
	if _, err := sts[0].CreateUser(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	secret, _, err := sts[0].CreateAuthKey(ctx, store.AuthKeyRequest{User: "bench", Reusable: true})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var busy atomic.Int64
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			mk, nk := benchKeys(i)
			name := fmt.Sprintf("node%d", i)
			req := store.RegisterRequest{AuthKey: secret, MachineKey: mk.Public(), NodeKey: nk.Public(),
				Hostname: name, Hostinfo: &wire.Hostinfo{Hostname: name, OS: "linux", Version: "bench"}}
			for try := 1; ; try++ {
				_, err := sts[i%len(sts)].Register(ctx, req)
				// On a machine whose disk is shared with other work, an
				// SQLite writer can wait past the busy timeout (10 s)
				// behind the others' fsyncs; a node would retry, and so
				// does the benchmark, within the time it measures.
				if err != nil && strings.Contains(err.Error(), "SQLITE_BUSY") && try < 10 {
					busy.Add(1)
					continue
				}
				return err
			}
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	if busy.Load() > 0 {
		b.Logf("%d registrations found the database busy and were retried", busy.Load())
	}
	return float64(n) / time.Since(start).Seconds()
}

func newStoresFixture(b *testing.B, backend string, n int) *storesFixture {
	start := time.Now()
	dir, err := os.MkdirTemp("", "weft-bench")
	if err != nil {
		b.Fatal(err)
	}
	f := &storesFixture{benchFixture: benchFixture{n: n, dir: dir}}
	var url string
	f.stores, url = openStores(b, backend, dir)
	f.regsPerSec = registerAll(b, f.stores, n)
	sk := key.NewMachine()
	var urls []string
	for _, st := range f.stores {
		cfg := benchServerConfig(st, sk)
		if url != "" {
			feed, err := changefeed.NewPostgres(url, nil)
			if err != nil {
				b.Fatal(err)
			}
			cfg.Feed, cfg.PersistInterval = feed, 50*time.Millisecond // as weft server on PostgreSQL
		}
		srv, hs := newBenchServer(b, cfg)
		f.srvs, f.hss = append(f.srvs, srv), append(f.hss, hs)
		urls = append(urls, hs.URL)
	}
	f.startChild(b, urls, sk.Public())
	f.logFeeds(b, "when the nodes were ready")
	if len(f.srvs) > 1 {
		f.awaitFeed(b)
		f.logFeeds(b, "when the servers had applied each other's feed")
	}
	f.setup = time.Since(start)
	return f
}

// awaitFeed waits until every server counts every node online with the
// endpoints it sent: the child's "ready" only says the nodes' own streams
// fell quiet, while a server may still be applying the other's change
// feed (one store read per node named), which a change would queue
// behind.
func (f *storesFixture) awaitFeed(b *testing.B) {
	start := time.Now()
	for {
		var counts []int
		done := true
		for _, srv := range f.srvs {
			k := srv.m.benchSettled()
			counts = append(counts, k)
			done = done && k == f.n
		}
		if done {
			b.Logf("the servers applied each other's change feed %v after the nodes were ready", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 30*time.Minute {
			f.close()
			b.Fatalf("after 30 minutes the servers count %v of %d nodes online with their endpoints", counts, f.n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// logFeeds logs what each server's share of the change feed cost so far,
// with two servers.
func (f *storesFixture) logFeeds(b *testing.B, when string) {
	if len(f.srvs) < 2 {
		return
	}
	for i, srv := range f.srvs {
		b.Logf("server %d %s: %v; load average %s", i, when, &srv.feedStats, loadAverage())
	}
}

// benchSettled counts the nodes online with endpoints in m's view.
func (m *mapper) benchSettled() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := 0
	for _, e := range m.nodes {
		if e.n.Online && len(e.n.Endpoints) > 0 {
			k++
		}
	}
	return k
}

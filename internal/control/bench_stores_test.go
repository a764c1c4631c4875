//go:build unix

package control

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/changefeed"
	"weft/internal/key"
	"weft/internal/pgtest"
	"weft/internal/store"
	"weft/internal/wire"
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
		b.Run(backend, func(b *testing.B) {
			key := fmt.Sprintf("%s/%d", backend, n)
			storesMu.Lock()
			f := storeFixtures[key]
			if f == nil {
				f = newStoresFixture(b, backend, n)
				storeFixtures[key] = f
				b.Logf("%s: %d nodes registered at %.0f/s, connected in %v", backend, n, f.regsPerSec, f.setup.Round(time.Millisecond))
			}
			storesMu.Unlock()
			var total time.Duration
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.changes++ // each change new, across Go's calls
				if _, err := fmt.Fprintf(f.stdin, "change %d\n", f.changes); err != nil {
					b.Fatal(err)
				}
				fields, err := f.expect("done")
				if err != nil {
					b.Fatal(err)
				}
				ns, _ := strconv.ParseInt(fields[0], 10, 64)
				total += time.Duration(ns)
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(n), "nodes")
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-all/change")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "server-cpu-ms/change")
			b.ReportMetric(f.regsPerSec, "registrations/s")
		})
	}
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
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mk, nk := benchKeys(i)
			name := fmt.Sprintf("node%d", i)
			_, err := sts[i%len(sts)].Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: mk.Public(), NodeKey: nk.Public(),
				Hostname: name, Hostinfo: &wire.Hostinfo{Hostname: name, OS: "linux", Version: "bench"}})
			if err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
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
		cfg := Config{Store: st, Key: sk, KeepAlive: time.Hour, RegisterRate: -1, WriteTimeout: time.Hour}
		if url != "" {
			feed, err := changefeed.NewPostgres(url, nil)
			if err != nil {
				b.Fatal(err)
			}
			cfg.Feed, cfg.PersistInterval = feed, 50*time.Millisecond // as weft server on PostgreSQL
		}
		srv, err := New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		f.srvs, f.hss = append(f.srvs, srv), append(f.hss, hs)
		urls = append(urls, hs.URL)
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	f.child = exec.Command(exe, "-test.run=^TestBenchNodesHelper$", "-test.timeout=0")
	f.child.Env = append(os.Environ(), "WEFT_BENCH_HELPER=1", "WEFT_BENCH_NODES="+strconv.Itoa(n),
		"WEFT_BENCH_URL="+strings.Join(urls, ","), "WEFT_BENCH_KEY="+sk.Public().String())
	f.child.Stderr = os.Stderr
	if f.stdin, err = f.child.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	out, err := f.child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := f.child.Start(); err != nil {
		b.Fatal(err)
	}
	f.lines = bufio.NewScanner(out)
	if _, err := f.expect("ready"); err != nil {
		f.close()
		b.Fatal(err)
	}
	f.setup = time.Since(start)
	return f
}

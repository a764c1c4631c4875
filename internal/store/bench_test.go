package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"weft/internal/pgtest"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// The store's benchmarks run on every backend in one run, so SQLite and
// PostgreSQL are compared on the same machine at the same moment
// (docs/benchmarks.md, "Store: SQLite and PostgreSQL"). PostgreSQL runs
// durable here (every commit flushed to disk, as SQLite's
// synchronous=FULL does), not with the tests' fsync=off.
func forEachStoreBench(b *testing.B, fn func(b *testing.B, f *fixture)) {
	for _, be := range backends {
		if be.name == "postgres" {
			be.newDB = func(t testing.TB) string { return pgtest.Start(t, pgtest.Options{Durable: true}).CreateDB(t) }
		}
		b.Run(be.name, func(b *testing.B) { fn(b, newFixtureOn(b, be)) })
	}
}

// BenchmarkRegister measures one registration (key check, name, addresses,
// insert, commit) against a growing database, one at a time.
func BenchmarkRegister(b *testing.B) {
	forEachStoreBench(b, func(b *testing.B, f *fixture) {
		k := benchKey(b, f)
		for b.Loop() {
			if _, err := f.s.Register(context.Background(), newMachine().req(k, "sim")); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRegisterParallel measures registrations from 16 goroutines at
// once, as a registration storm after an outage would bring: they
// serialise on the allocation cursor (see lockAllocation) in both
// databases, but PostgreSQL overlaps the rest of each transaction.
func BenchmarkRegisterParallel(b *testing.B) {
	forEachStoreBench(b, func(b *testing.B, f *fixture) {
		k := benchKey(b, f)
		b.SetParallelism(8) // × GOMAXPROCS 2 = 16 goroutines on CI's machine
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f.s.Register(context.Background(), newMachine().req(k, "sim")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkUpdateNodeRuntime measures the control server's most frequent
// write: a node's endpoints or last-seen time.
func BenchmarkUpdateNodeRuntime(b *testing.B) {
	forEachStoreBench(b, func(b *testing.B, f *fixture) {
		ctx := context.Background()
		n, err := f.s.Register(ctx, newMachine().req(benchKey(b, f), "sim"))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := f.s.UpdateNodeRuntime(ctx, n.ID, func(r *NodeRuntime) { r.LastSeen = time.Now() }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkListNodes measures reading a 1,000-node tailnet with routes, as
// the control server does when it starts and the admin API on every list.
func BenchmarkListNodes(b *testing.B) {
	forEachStoreBench(b, func(b *testing.B, f *fixture) {
		ctx := context.Background()
		k := benchKey(b, f)
		for range 1000 {
			if _, err := f.s.Register(ctx, newMachine().req(k, "sim")); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			if _, err := f.s.ListNodes(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchKey makes a user and a reusable key in f.
func benchKey(b *testing.B, f *fixture) string {
	b.Helper()
	ctx := context.Background()
	if _, err := f.s.CreateUser(ctx, "alice"); err != nil {
		b.Fatal(err)
	}
	k, _, err := f.s.CreateAuthKey(ctx, AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkListNodesPage measures one 100-node page of the node list, in
// several orders and with a search, on SQLite with 100 nodes (the
// baseline) and with 10,000: the console's nodes page reads this alone.
// PostgreSQL is left out here: filling it durably with 10,000
// registrations takes minutes.
func BenchmarkListNodesPage(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			f := newFixtureOn(b, backends[0])
			ctx := context.Background()
			k := benchKey(b, f)
			for i := range n {
				if _, err := f.s.Register(ctx, newMachine().req(k, fmt.Sprintf("sim%d", i))); err != nil {
					b.Fatal(err)
				}
			}
			for _, q := range []struct {
				name string
				q    NodePage
			}{
				{"id", NodePage{}},
				{"name", NodePage{Sort: SortName}},
				{"lastseen-desc", NodePage{Sort: SortLastSeen, Desc: true}},
				{"version", NodePage{Sort: SortVersion}},
				{"search", NodePage{Sort: SortName, Search: "sim9"}},
				{"offset-half", NodePage{Sort: SortName, Offset: n / 2}},
			} {
				b.Run(q.name, func(b *testing.B) {
					q.q.Limit = 100
					tstest.ReportCPU(b, func() {
						if _, err := f.s.ListNodesPage(ctx, q.q); err != nil {
							b.Fatal(err)
						}
					})
				})
			}
		})
	}
}

// BenchmarkChangedNodes measures what a control server pays for 500 nodes
// another server changed (docs/changefeed.md): re-reading them one
// GetNode each against one GetNodes, and writing their runtime facts one
// UpdateNodeRuntime each against one SetNodeRuntimes. Each iteration
// handles all 500 nodes.
func BenchmarkChangedNodes(b *testing.B) {
	const n = 500
	forEachStoreBench(b, func(b *testing.B, f *fixture) {
		ctx := context.Background()
		k := benchKey(b, f)
		var ids []wire.NodeID
		for range n {
			nd, err := f.s.Register(ctx, newMachine().req(k, "sim"))
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, nd.ID)
		}
		rt := NodeRuntime{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:41641")}, HomeRegion: 1}
		b.Run("GetNode-each", func(b *testing.B) {
			for b.Loop() {
				for _, id := range ids {
					if _, err := f.s.GetNode(ctx, id); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run("GetNodes", func(b *testing.B) {
			for b.Loop() {
				if got, err := f.s.GetNodes(ctx, ids); err != nil || len(got) != n {
					b.Fatal(len(got), err)
				}
			}
		})
		b.Run("UpdateNodeRuntime-each", func(b *testing.B) {
			for b.Loop() {
				for _, id := range ids {
					if _, err := f.s.UpdateNodeRuntime(ctx, id, func(r *NodeRuntime) { *r = rt }); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run("SetNodeRuntimes", func(b *testing.B) {
			rts := map[wire.NodeID]NodeRuntime{}
			for _, id := range ids {
				rts[id] = rt
			}
			for b.Loop() {
				if _, err := f.s.SetNodeRuntimes(ctx, rts); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

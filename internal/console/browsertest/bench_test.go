//go:build linux

package browsertest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"weft/internal/key"
	"weft/internal/store"
)

// fillStore makes a server data directory whose store holds n nodes of
// user alice, as `weft server` would have registered them.
func fillStore(b *testing.B, dataDir string, n int) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dataDir, "weft.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateUser(ctx, "alice"); err != nil {
		b.Fatal(err)
	}
	secret, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: fmt.Sprintf("node%05d", i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNodesPageFirstRender measures, in Chromium, the console's
// nodes page from navigation to first contentful paint, and to the load
// event, with 10 nodes (the baseline) and with 10,000 nodes. It reports
// fcp-ms and load-ms per page view; docs/benchmarks.md has figures.
func BenchmarkNodesPageFirstRender(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			ctx := newBrowser(b)
			dir := b.TempDir()
			fillStore(b, dir, n)
			srv := startServerIn(b, dir)
			signIn(b, ctx, srv.admin("console-link"), srv.URL)
			var fcp, load float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				open(b, ctx, srv.URL+"/admin/?sort=lastseen")
				// The paint entry can come a frame after the load event.
				var m map[string]float64
				for try := 0; ; try++ {
					m = get(b, ctx, "read the paint timing", chromedp.Evaluate[map[string]float64](`(() => {
						const p = performance.getEntriesByName("first-contentful-paint")[0];
						const nav = performance.getEntriesByType("navigation")[0];
						return {fcp: p ? p.startTime : -1, load: nav.loadEventEnd};
					})()`))
					if m["fcp"] >= 0 {
						break
					}
					if try == 100 {
						b.Fatal("no first-contentful-paint entry after 5 s")
					}
					time.Sleep(50 * time.Millisecond)
				}
				fcp += m["fcp"]
				load += m["load"]
			}
			b.ReportMetric(fcp/float64(b.N), "fcp-ms")
			b.ReportMetric(load/float64(b.N), "load-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

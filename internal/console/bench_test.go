package console

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"weft/internal/tstest"
)

// BenchmarkNodesPage10k is the server's side of the nodes page with
// 10,000 nodes: the admin API's page of the node list (in process),
// and rendering it. The browser's side is in browsertest.
// BenchmarkNodesPage100 is the same-run baseline with 100 nodes, the
// size of one page. Both report CPU time per view (cpu-ms/op) beside the
// wall time, which on a shared machine waits for the CPU as well.
func BenchmarkNodesPage10k(b *testing.B) { benchNodesPage(b, 10000) }

// BenchmarkNodesPage100 is BenchmarkNodesPage10k's baseline: the same
// views of a 100-node tailnet.
func BenchmarkNodesPage100(b *testing.B) { benchNodesPage(b, 100) }

// benchNodesPage measures views of the nodes page of an n-node tailnet:
// sorted by last seen (the browser benchmark's view), by name (the
// default), online first (the order the store cannot give), and searched.
func benchNodesPage(b *testing.B, n int) {
	e := newEnv(b, n)
	cookie := e.signIn()
	for _, view := range []string{"?sort=lastseen", "", "?sort=state&desc=1", "?q=secretnode99"} {
		b.Run("view="+view, func(b *testing.B) {
			tstest.ReportCPU(b, func() {
				req := httptest.NewRequest("GET", "/admin/"+view, nil)
				req.Host = "weft.test"
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				e.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			})
		})
	}
}

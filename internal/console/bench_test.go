package console

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkNodesPage10k is the server's side of the nodes page with
// 10,000 nodes: the admin API's node list (in process), search, sort and
// rendering one page. The browser's side is in browsertest.
func BenchmarkNodesPage10k(b *testing.B) {
	e := newEnv(b, 10000)
	cookie := e.signIn()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("GET", "/admin/?sort=lastseen", nil)
		req.Host = "weft.test"
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

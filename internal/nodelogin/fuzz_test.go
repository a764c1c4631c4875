package nodelogin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"weft/internal/tstest"
)

// FuzzLoginEndpoints feeds arbitrary bodies to the unauthenticated login
// endpoints: each answer is one of the documented statuses, and a start
// is only ever made from a body that decodes.
func FuzzLoginEndpoints(f *testing.F) {
	for _, s := range []string{`{"hostname":"jeju"}`, `{"poll":"x"}`, `{`, `[]`, `{"hostname":1}`, strings.Repeat("a", 5000)} {
		f.Add(s)
	}
	ctx := context.Background()
	clk := tstest.NewClock(time.Now())
	m := newManager(newStore(f, clk), clk)
	mux := http.NewServeMux()
	(&Handler{Logins: m, BaseURL: "http://x"}).Register(mux)
	f.Fuzz(func(t *testing.T, body string) {
		// Every earlier login has expired: the store drops them at
		// the next start, so the bounds never refuse one here.
		clk.Advance(Lifetime)
		for _, p := range []string{StartPath, WaitPath} {
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest("POST", p, strings.NewReader(body)))
			switch w.Code {
			case http.StatusCreated, http.StatusBadRequest, http.StatusGone, http.StatusAccepted:
			default:
				t.Fatalf("%s %q: status %d", p, body, w.Code)
			}
			ls, err := m.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p == StartPath && w.Code == http.StatusCreated && len(ls) != 1 {
				t.Fatalf("a created login is not pending: %v", ls)
			}
			if p == StartPath && w.Code == http.StatusBadRequest && len(ls) != 0 {
				t.Fatalf("a refused body started a login: %s", fmt.Sprint(ls))
			}
		}
	})
}

package nodelogin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzLoginEndpoints feeds arbitrary bodies to the unauthenticated login
// endpoints: each answer is one of the documented statuses, and a start
// is only ever made from a body that decodes.
func FuzzLoginEndpoints(f *testing.F) {
	for _, s := range []string{`{"hostname":"jeju"}`, `{"poll":"x"}`, `{`, `[]`, `{"hostname":1}`, strings.Repeat("a", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		m := New(nil)
		mux := http.NewServeMux()
		(&Handler{Logins: m, BaseURL: "http://x"}).Register(mux)
		for _, p := range []string{StartPath, WaitPath} {
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest("POST", p, strings.NewReader(body)))
			switch w.Code {
			case http.StatusCreated, http.StatusBadRequest, http.StatusGone, http.StatusAccepted:
			default:
				t.Fatalf("%s %q: status %d", p, body, w.Code)
			}
			if p == StartPath && w.Code == http.StatusCreated && len(m.Pending()) != 1 {
				t.Fatalf("a created login is not pending")
			}
			if p == StartPath && w.Code == http.StatusBadRequest && len(m.Pending()) != 0 {
				t.Fatalf("a refused body started a login")
			}
		}
	})
}

package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tstest"
)

type env struct {
	t     *testing.T
	s     *Server
	clk   *tstest.Clock
	h     http.Handler
	nodes []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "weft.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clk: tstest.NewClock(time.Now())}
	for i := 0; i < 3; i++ {
		secret, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		n, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: fmt.Sprintf("secretnode%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		e.nodes = append(e.nodes, n.Name)
	}
	e.s = &Server{Store: st, BaseURL: "http://weft.test", Now: e.clk.Now}
	mux := http.NewServeMux()
	mux.Handle(Prefix, e.s)
	mux.HandleFunc("GET /{$}", RedirectRoot)
	e.h = mux
	return e
}

// do runs one request through the handler and checks the security
// headers every console response must carry.
func (e *env) do(method, target string, cookie *http.Cookie, form url.Values, hdr map[string]string) *http.Response {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	resp := rec.Result()
	if got := resp.Header.Get("Content-Security-Policy"); got != CSP {
		e.t.Errorf("%s %s: Content-Security-Policy %q, want %q", method, target, got, CSP)
	}
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			e.t.Errorf("%s %s: no %s header", method, target, h)
		}
	}
	return resp
}

func bodyOf(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) link() string {
	e.t.Helper()
	l, exp, err := e.s.NewLoginLink()
	if err != nil || !exp.After(e.clk.Now()) {
		e.t.Fatalf("NewLoginLink = %q, %v, %v", l, exp, err)
	}
	u, err := url.Parse(l)
	if err != nil || u.Host != "weft.test" {
		e.t.Fatalf("link %q: %v", l, err)
	}
	return u.RequestURI()
}

// signIn spends a fresh login link and returns the session cookie.
func (e *env) signIn() *http.Cookie {
	e.t.Helper()
	resp := e.do("GET", e.link(), nil, nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix {
		e.t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != Prefix {
				e.t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=%s", c, Prefix)
			}
			return c
		}
	}
	e.t.Fatal("login set no session cookie")
	return nil
}

func (e *env) showsNodes(body string) bool {
	for _, n := range e.nodes {
		if !strings.Contains(body, n) {
			return false
		}
	}
	return true
}

// TestUnauthenticatedSeesNoNodes: without a live session no console
// response names a node; with one, the nodes page names every node.
func TestUnauthenticatedSeesNoNodes(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name   string
		cookie *http.Cookie
		target string
	}{
		{"no cookie", nil, "/admin/"},
		{"made-up cookie", &http.Cookie{Name: cookieName, Value: strings.Repeat("ab", 32)}, "/admin/"},
		{"empty cookie", &http.Cookie{Name: cookieName, Value: ""}, "/admin/"},
		{"login without token", nil, "/admin/login"},
		{"login with wrong token", nil, "/admin/login?token=" + strings.Repeat("0", 64)},
		{"unknown page", nil, "/admin/nodes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.do("GET", c.target, c.cookie, nil, nil)
			body := bodyOf(t, resp)
			if resp.StatusCode < 400 || strings.Contains(body, "secretnode") {
				t.Fatalf("status %d, body shows nodes or succeeds:\n%s", resp.StatusCode, body)
			}
		})
	}
	cookie := e.signIn()
	resp := e.do("GET", "/admin/", cookie, nil, nil)
	if body := bodyOf(t, resp); resp.StatusCode != 200 || !e.showsNodes(body) || !strings.Contains(body, `name="csrf"`) {
		t.Fatalf("signed in: %d\n%s", resp.StatusCode, body)
	}
	// A session ends after its lifetime.
	e.clk.Advance(SessionLifetime)
	resp = e.do("GET", "/admin/", cookie, nil, nil)
	if body := bodyOf(t, resp); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "secretnode") {
		t.Fatalf("expired session: %d\n%s", resp.StatusCode, body)
	}
}

// TestLoginLinkSingleUseAndExpiring: a link signs in once; a used or an
// expired link is refused.
func TestLoginLinkSingleUseAndExpiring(t *testing.T) {
	e := newEnv(t)
	l := e.link()
	if resp := e.do("GET", l, nil, nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: %d", resp.StatusCode)
	}
	if resp := e.do("GET", l, nil, nil, nil); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("second use: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	old := e.link()
	e.clk.Advance(LoginLinkLifetime)
	if resp := e.do("GET", old, nil, nil, nil); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("expired link: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// TestCSRF: signing out (the console's state change) needs the session's
// CSRF token and the console's own origin; a refused attempt leaves the
// session alive.
func TestCSRF(t *testing.T) {
	e := newEnv(t)
	cookie := e.signIn()
	m := csrfField.FindStringSubmatch(bodyOf(t, e.do("GET", "/admin/", cookie, nil, nil)))
	if m == nil {
		t.Fatal("nodes page has no CSRF field")
	}
	token := m[1]
	for _, c := range []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {strings.Repeat("0", len(token))}}, nil},
		{"right token from another origin", url.Values{"csrf": {token}}, map[string]string{"Origin": "https://evil.example"}},
		{"right token, cross-site fetch", url.Values{"csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if resp := e.do("POST", "/admin/logout", cookie, c.form, c.hdr); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", resp.StatusCode)
			}
			if resp := e.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != 200 {
				t.Fatalf("refused sign-out ended the session: %d", resp.StatusCode)
			}
		})
	}
	resp := e.do("POST", "/admin/logout", cookie, url.Values{"csrf": {token}}, map[string]string{"Origin": "http://example.com"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out with the token: %d", resp.StatusCode)
	}
	if resp := e.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session alive after sign out: %d", resp.StatusCode)
	}
}

// TestHeadersOnEveryResponse: the stylesheet, redirects, errors and the
// root redirect carry the CSP too (do checks it on each).
func TestHeadersOnEveryResponse(t *testing.T) {
	e := newEnv(t)
	if resp := e.do("GET", "/admin/static/console.css", nil, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("stylesheet: %d", resp.StatusCode)
	}
	if resp := e.do("GET", "/", nil, nil, nil); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != Prefix {
		t.Fatalf("root: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.do("POST", "/admin/", nil, url.Values{}, nil)
	e.do("GET", "/admin/static/nosuch.js", nil, nil, nil)
	e.do("POST", "/admin/logout", nil, url.Values{}, nil)
}

package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/key"
	"weft/internal/nodelogin"
	"weft/internal/store"
	"weft/internal/tstest"
	"weft/internal/tstest/storetest"
	"weft/internal/wire"
)

type env struct {
	t     testing.TB
	st    store.Store
	db    string // the store's file
	s     *Server
	clk   *tstest.Clock
	h     http.Handler
	nodes []string
	// logins are the interactive node logins the admin API approves.
	logins *nodelogin.Manager
	// wrap, when set, is what the admin API reads the store through
	// (such as a store that counts reads).
	wrap func(store.Store) store.Store
}

// fixedHealth gives every node the same samples.
type fixedHealth []wire.HealthSample

func (f fixedHealth) Since(wire.NodeID, time.Time) ([]wire.HealthSample, error) { return f, nil }

// newEnv is a console over a fresh store with user alice and n nodes of
// hers named secretnode0…, the first one advertising an exit node.
func newEnv(t testing.TB, n int) *env { t.Helper(); return newEnvWrapped(t, n, nil) }

// newEnvWrapped is newEnv with the admin API reading the store through
// wrap (nil: directly).
func newEnvWrapped(t testing.TB, n int, wrap func(store.Store) store.Store) *env {
	t.Helper()
	ctx := context.Background()
	clk := tstest.NewClock(time.Now())
	db := filepath.Join(t.TempDir(), "weft.db")
	st := storetest.Open(t, db, store.Options{Now: clk.Now}, "alice")
	e := &env{t: t, st: st, clk: clk, db: db, wrap: wrap}
	secret, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		nd, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: fmt.Sprintf("secretnode%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		e.nodes = append(e.nodes, nd.Name)
	}
	if n > 0 {
		if _, err := st.SetAdvertisedRoutes(ctx, 1, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}); err != nil {
			t.Fatal(err)
		}
	}
	e.mount()
	return e
}

// mount serves a console (and its admin API) over e.st at e.h.
func (e *env) mount() {
	health := fixedHealth{
		{Time: time.Unix(1000, 0), Metrics: map[string]float64{"peer_rtt_ms:busan": 30, "peer_direct:busan": 0, "battery_pct": 90}},
		{Time: time.Unix(1300, 0), Metrics: map[string]float64{"peer_rtt_ms:busan": 20, "peer_direct:busan": 1, "peer_rx_bytes:busan": 3000, "relay_rtt_ms:1": 12}},
	}
	e.logins = nodelogin.New(e.st)
	e.logins.Now = e.clk.Now
	apiStore := e.st
	if e.wrap != nil {
		apiStore = e.wrap(e.st)
	}
	api := &adminapi.Server{Store: apiStore, Online: func(id wire.NodeID) bool { return id == 1 }, Health: health, Logins: e.logins}
	e.s = &Server{API: api.APIHandler(), Sessions: e.st, BaseURL: "http://weft.test", Now: e.clk.Now}
	mux := http.NewServeMux()
	mux.Handle(Prefix, e.s)
	mux.HandleFunc("GET /{$}", RedirectRoot)
	e.h = mux
}

// another is a second console on e's database, through a store handle
// of its own: another server sharing the database.
func (e *env) another() *env {
	e.t.Helper()
	st := storetest.Open(e.t, e.db, store.Options{Now: e.clk.Now})
	b := &env{t: e.t, st: st, clk: e.clk, db: e.db, nodes: e.nodes}
	b.mount()
	return b
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
	req.Host = "weft.test"
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

func bodyOf(t testing.TB, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// token makes a login link and returns its token.
func (e *env) token() string {
	e.t.Helper()
	l, exp, err := e.s.NewLoginLink(context.Background())
	if err != nil || !exp.After(e.clk.Now()) {
		e.t.Fatalf("NewLoginLink = %q, %v, %v", l, exp, err)
	}
	u, err := url.Parse(l)
	if err != nil || u.Host != "weft.test" || u.Path != "/admin/login" {
		e.t.Fatalf("link %q: %v", l, err)
	}
	return u.Query().Get("token")
}

// signIn opens a fresh login link, presses its button, and returns the
// session cookie.
func (e *env) signIn() *http.Cookie {
	e.t.Helper()
	tok := e.token()
	resp := e.do("GET", "/admin/login?token="+tok, nil, nil, nil)
	if body := bodyOf(e.t, resp); resp.StatusCode != 200 || len(resp.Cookies()) != 0 || !strings.Contains(body, `id="signin"`) {
		e.t.Fatalf("opening the link: %d, cookies %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	resp = e.do("POST", "/admin/login", nil, url.Values{"token": {tok}}, map[string]string{"Origin": "http://weft.test"})
	if body := bodyOf(e.t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, `http-equiv="refresh" content="0;url=/admin/"`) {
		e.t.Fatalf("login: %d\n%s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != Prefix || c.Secure {
				e.t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=%s, not Secure over http", c, Prefix)
			}
			return c
		}
	}
	e.t.Fatal("login set no session cookie")
	return nil
}

// sessionOf starts a console session of user, who must exist, without a
// login link, and returns its cookie.
func (e *env) sessionOf(ctx context.Context, user string) *http.Cookie {
	e.t.Helper()
	tok, err := e.s.startSession(ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	return &http.Cookie{Name: cookieName, Value: tok}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf reads the session's CSRF token from the nodes page.
func (e *env) csrf(cookie *http.Cookie) string {
	e.t.Helper()
	m := csrfField.FindStringSubmatch(bodyOf(e.t, e.do("GET", "/admin/", cookie, nil, nil)))
	if m == nil {
		e.t.Fatal("nodes page has no CSRF field")
	}
	return m[1]
}

// post sends a console form with the session's token from the console's
// own origin, as the browser does.
func (e *env) post(cookie *http.Cookie, target string, form url.Values) *http.Response {
	e.t.Helper()
	form.Set("csrf", e.csrf(cookie))
	return e.do("POST", target, cookie, form, map[string]string{"Origin": "http://weft.test", "Sec-Fetch-Site": "same-origin"})
}

// pages are the console's pages, each of which must be refused without a
// session.
var pages = []string{"/admin/", "/admin/nodes/id:1", "/admin/nodes/id:1/health.json", "/admin/users",
	"/admin/keys", "/admin/policy", "/admin/policy/history", "/admin/dns", "/admin/audit", "/admin/logins", "/admin/?q=secret"}

// TestUnauthenticatedSeesNothing: without a live session no console
// response names a node, a user or a key; with one, every page answers.
func TestUnauthenticatedSeesNothing(t *testing.T) {
	e := newEnv(t, 3)
	cookie := e.signIn()
	bad := []*http.Cookie{nil, {Name: cookieName, Value: strings.Repeat("ab", 32)}, {Name: cookieName, Value: ""}}
	for _, p := range pages {
		for i, c := range bad {
			t.Run(fmt.Sprintf("%s cookie %d", p, i), func(t *testing.T) {
				resp := e.do("GET", p, c, nil, nil)
				body := bodyOf(t, resp)
				if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "secretnode") || strings.Contains(body, "alice") {
					t.Fatalf("status %d, body shows the tailnet:\n%s", resp.StatusCode, body)
				}
			})
		}
		if resp := e.do("GET", p, cookie, nil, nil); resp.StatusCode != 200 {
			t.Errorf("signed in, %s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/admin/login", "/admin/login?token=" + strings.Repeat("0", 64), "/admin/nosuch"} {
		body := bodyOf(t, e.do("GET", p, nil, nil, nil))
		if strings.Contains(body, "secretnode") {
			t.Errorf("%s shows a node", p)
		}
	}
	if body := bodyOf(t, e.do("GET", "/admin/", cookie, nil, nil)); !strings.Contains(body, e.nodes[2]) {
		t.Fatalf("signed in, the nodes page lacks %s", e.nodes[2])
	}
	// A session ends after its lifetime.
	e.clk.Advance(SessionLifetime)
	resp := e.do("GET", "/admin/", cookie, nil, nil)
	if body := bodyOf(t, resp); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "secretnode") {
		t.Fatalf("expired session: %d\n%s", resp.StatusCode, body)
	}
}

// TestLoginLinkSingleUseAndExpiring: opening a link spends nothing; its
// button signs in once; a used or expired link, or a sign-in posted from
// another origin, is refused without a cookie.
func TestLoginLinkSingleUseAndExpiring(t *testing.T) {
	e := newEnv(t, 0)
	same := map[string]string{"Origin": "http://weft.test"}
	tok := e.token()
	if resp := e.do("POST", "/admin/login", nil, url.Values{"token": {tok}}, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("sign-in from another origin: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	for i := 0; i < 2; i++ { // a scanner opening the link does not spend it
		e.do("GET", "/admin/login?token="+tok, nil, nil, nil)
	}
	if resp := e.do("POST", "/admin/login", nil, url.Values{"token": {tok}}, same); resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("first use: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if resp := e.do("POST", "/admin/login", nil, url.Values{"token": {tok}}, same); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("second use: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	old := e.token()
	e.clk.Advance(LoginLinkLifetime)
	if resp := e.do("POST", "/admin/login", nil, url.Values{"token": {old}}, same); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("expired link: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}

// TestCSRF: every state-changing form needs the session's CSRF token and
// the console's own origin; a refused attempt changes nothing.
func TestCSRF(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	cookie := e.signIn()
	token := e.csrf(cookie)
	forms := []struct {
		target string
		form   url.Values
	}{
		{"/admin/logout", url.Values{}},
		{"/admin/nodes/id:1/routes", url.Values{"prefix": {"exit"}, "action": {"approve"}}},
		{"/admin/nodes/id:1/rename", url.Values{"name": {"renamed"}}},
		{"/admin/nodes/id:1/tags", url.Values{"tags": {"tag:web"}}},
		{"/admin/nodes/id:1/expire", url.Values{}},
		{"/admin/nodes/id:2/delete", url.Values{"confirm": {"yes"}}},
		{"/admin/users", url.Values{"name": {"mallory"}}},
		{"/admin/users/alice/delete", url.Values{}},
		{"/admin/users/alice/role", url.Values{"role": {"admin"}}},
		{"/admin/keys", url.Values{"user": {"alice"}}},
		{"/admin/policy", url.Values{"action": {"save"}, "body": {`{"acls": []}`}}},
		{"/admin/dns", url.Values{"source": {`{"magic_dns": false}`}}},
		{"/admin/logins/nosuch/approve", url.Values{"user": {"alice"}}},
	}
	attempts := []struct {
		name string
		csrf string
		hdr  map[string]string
	}{
		{"no token", "", nil},
		{"wrong token", strings.Repeat("0", len(token)), nil},
		{"right token from another origin", token, map[string]string{"Origin": "https://evil.example"}},
		{"right token, cross-site fetch", token, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"right token, same-site other origin", token, map[string]string{"Sec-Fetch-Site": "same-site"}},
	}
	before := e.snapshot(ctx)
	for _, f := range forms {
		for _, a := range attempts {
			t.Run(f.target+" "+a.name, func(t *testing.T) {
				form := url.Values{}
				for k, v := range f.form {
					form[k] = v
				}
				if a.csrf != "" {
					form.Set("csrf", a.csrf)
				}
				if resp := e.do("POST", f.target, cookie, form, a.hdr); resp.StatusCode != http.StatusForbidden {
					t.Fatalf("status %d, want 403", resp.StatusCode)
				}
			})
		}
	}
	if after := e.snapshot(ctx); after != before {
		t.Fatalf("refused requests changed the tailnet:\nbefore %s\nafter  %s", before, after)
	}
	if resp := e.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("refused sign-out ended the session: %d", resp.StatusCode)
	}
	resp := e.post(cookie, "/admin/logout", url.Values{})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out with the token: %d", resp.StatusCode)
	}
	if resp := e.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session alive after sign out: %d", resp.StatusCode)
	}
}

// snapshot is what the console's forms can change, as text.
func (e *env) snapshot(ctx context.Context) string {
	e.t.Helper()
	users, err1 := e.st.ListUsers(ctx)
	keys, err2 := e.st.ListAuthKeys(ctx, "")
	routes, err3 := e.st.ListRoutes(ctx)
	dns, _, err4 := e.st.DNSSettings(ctx)
	pols, err5 := e.st.ListPolicies(ctx)
	nodes, err6 := e.st.ListNodes(ctx)
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			e.t.Fatal(err)
		}
	}
	var us []string
	for _, u := range users {
		us = append(us, u.Name+"="+u.Role)
	}
	var ns []string
	for _, n := range nodes {
		ns = append(ns, fmt.Sprintf("%d=%s/%s/%v/%d", n.ID, n.Name, n.User, n.Tags, n.KeyExpiry.UnixNano()))
	}
	return fmt.Sprintf("users %v keys %d nodes %v routes %+v dns %q policies %d", us, len(keys), ns, routes, dns, len(pols))
}

// TestHeadersOnEveryResponse: scripts, stylesheets, redirects, errors and
// the root redirect carry the CSP too (do checks it on each).
func TestHeadersOnEveryResponse(t *testing.T) {
	e := newEnv(t, 0)
	for _, p := range []string{"console.css", "health.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css"} {
		if resp := e.do("GET", "/admin/static/"+p, nil, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	if resp := e.do("GET", "/", nil, nil, nil); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != Prefix {
		t.Fatalf("root: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.do("POST", "/admin/", nil, url.Values{}, nil)
	e.do("GET", "/admin/static/nosuch.js", nil, nil, nil)
	e.do("POST", "/admin/logout", nil, url.Values{}, nil)
}

// TestNoInlineScript: no template carries inline script or style, which
// the CSP would block (and which would mean the CSP had to be loosened).
func TestNoInlineScript(t *testing.T) {
	inline := regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|\sstyle="|\son[a-z]+="|javascript:`)
	ents, err := templateFS.ReadDir("templates")
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		b, err := templateFS.ReadFile("templates/" + ent.Name())
		if err != nil {
			t.Fatal(err)
		}
		if m := inline.Find(b); m != nil {
			t.Errorf("%s: inline script or style %q", ent.Name(), m)
		}
	}
}

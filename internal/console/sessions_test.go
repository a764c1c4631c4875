package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// signInAt spends the login link tok at e's console and returns the
// session cookie (nil when refused) and the status.
func (e *env) signInAt(tok string) (*http.Cookie, int) {
	e.t.Helper()
	resp := e.do("POST", "/admin/login", nil, url.Values{"token": {tok}}, map[string]string{"Origin": "http://weft.test"})
	for _, c := range resp.Cookies() {
		if c.Name == cookieName && c.MaxAge > 0 {
			return c, resp.StatusCode
		}
	}
	return nil, resp.StatusCode
}

// auditActions lists the audit log's actions with their credentials,
// oldest first.
func (e *env) auditActions(ctx context.Context) []string {
	e.t.Helper()
	es, err := e.st.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for i := len(es) - 1; i >= 0; i-- {
		out = append(out, es[i].Action+" by "+es[i].Actor+" ("+es[i].Credential+")")
	}
	return out
}

// TestSessionsAcrossServers: two consoles on one database, as two
// servers behind a load balancer. A link made at A signs in at B, once;
// the session (and its CSRF token) is good at both, and a change posted
// at B with the token read at A goes through; signing out at B ends it
// at A too. Sign-in and sign-out are in the audit log.
func TestSessionsAcrossServers(t *testing.T) {
	a := newEnv(t, 2)
	b := a.another()
	ctx := context.Background()
	tok := a.token()
	if resp := b.do("GET", "/admin/login?token="+tok, nil, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("opening A's link at B: %d", resp.StatusCode)
	}
	cookie, status := b.signInAt(tok)
	if cookie == nil {
		t.Fatalf("A's link at B: %d, no session", status)
	}
	if c, status := a.signInAt(tok); c != nil || status != http.StatusUnauthorized {
		t.Fatalf("the link spent at B, again at A: %d, cookie %v", status, c)
	}
	for name, e := range map[string]*env{"A": a, "B": b} {
		resp := e.do("GET", "/admin/", cookie, nil, nil)
		if body := bodyOf(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, a.nodes[1]) {
			t.Fatalf("B's session at %s: %d", name, resp.StatusCode)
		}
	}
	if ca, cb := a.csrf(cookie), b.csrf(cookie); ca != cb {
		t.Fatalf("CSRF token %q at A, %q at B", ca, cb)
	}
	form := url.Values{"name": {"renamed"}, "csrf": {a.csrf(cookie)}}
	hdr := map[string]string{"Origin": "http://weft.test", "Sec-Fetch-Site": "same-origin"}
	if resp := b.do("POST", "/admin/nodes/id:1/rename", cookie, form, hdr); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("rename at B with A's CSRF token: %d\n%s", resp.StatusCode, bodyOf(t, resp))
	}
	if n, err := a.st.GetNode(ctx, 1); err != nil || n.Name != "renamed" {
		t.Fatalf("node 1 after the rename: %+v %v", n, err)
	}
	if resp := b.post(cookie, "/admin/logout", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out at B: %d", resp.StatusCode)
	}
	for name, e := range map[string]*env{"A": a, "B": b} {
		if resp := e.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("signed out at B, the session at %s: %d", name, resp.StatusCode)
		}
	}
	want := []string{"console.signin by  (login link)", "node.rename by  (console session)", "console.signout by  (console session)"}
	if got := a.auditActions(ctx); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("audit log %q, want %q", got, want)
	}
}

// TestSessionsOutliveRestart: a session and an unspent link made by one
// console are good at a console started afresh on the same database, as
// after a server restart.
func TestSessionsOutliveRestart(t *testing.T) {
	a := newEnv(t, 1)
	cookie := a.signIn()
	tok := a.token()
	restarted := a.another()
	if resp := restarted.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session after a restart: %d", resp.StatusCode)
	}
	if c, status := restarted.signInAt(tok); c == nil {
		t.Fatalf("the link after a restart: %d", status)
	}
}

// TestSessionsExpireEverywhere: a link or a session past its lifetime is
// refused at every console on the database.
func TestSessionsExpireEverywhere(t *testing.T) {
	a := newEnv(t, 1)
	b := a.another()
	cookie := a.signIn()
	tok := b.token()
	a.clk.Advance(LoginLinkLifetime)
	if c, status := a.signInAt(tok); c != nil || status != http.StatusUnauthorized {
		t.Fatalf("B's expired link at A: %d, cookie %v", status, c)
	}
	if resp := b.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("A's session at B before its end: %d", resp.StatusCode)
	}
	a.clk.Advance(SessionLifetime) // since its last use, at B
	for name, e := range map[string]*env{"A": a, "B": b} {
		if resp := e.do("GET", "/admin/", cookie, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("expired session at %s: %d", name, resp.StatusCode)
		}
	}
}

// TestSessionSlidesWhileUsed: a session used (at either console) lives
// on SessionLifetime past each use, well beyond SessionLifetime after
// sign-in, but not past SessionMaxLifetime however busy it is; the
// cookie is kept as long as the session may live.
func TestSessionSlidesWhileUsed(t *testing.T) {
	a := newEnv(t, 1)
	b := a.another()
	signedIn := a.clk.Now()
	cookie := a.signIn()
	if want := int(SessionMaxLifetime / time.Second); cookie.MaxAge != want {
		t.Fatalf("session cookie Max-Age %d; want %d", cookie.MaxAge, want)
	}
	step := SessionLifetime - time.Hour
	for i := 1; ; i++ {
		a.clk.Advance(step)
		e := []*env{a, b}[i%2]
		status := e.do("GET", "/admin/", cookie, nil, nil).StatusCode
		if a.clk.Now().Sub(signedIn) >= SessionMaxLifetime {
			if status != http.StatusUnauthorized {
				t.Fatalf("use %d, %v after sign-in (past the %v maximum): %d", i, a.clk.Now().Sub(signedIn), SessionMaxLifetime, status)
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("use %d, %v after sign-in and %v after the last use: %d; want the session extended", i, a.clk.Now().Sub(signedIn), step, status)
		}
	}
}

// TestSignInWithProviderAcrossServers: a sign-in with the identity
// provider finished at A (SignIn, which the server's OIDC callback
// calls) gives the user's session, good at B with the user's role as it
// is now, audited with the session. SignIn without a user starts none.
func TestSignInWithProviderAcrossServers(t *testing.T) {
	a := newEnv(t, 1)
	b := a.another()
	ctx := context.Background()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/oidc/callback", nil)
	a.s.SignIn(rec, req, "alice")
	var cookie *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if rec.Code != http.StatusOK || cookie == nil {
		t.Fatalf("SignIn: %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
	// alice is a member: she sees her node, not the policy.
	if resp := b.do("GET", "/admin/policy", cookie, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a member's session at B, policy page: %d", resp.StatusCode)
	}
	if _, err := a.st.SetUserRole(ctx, "alice", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if resp := b.do("GET", "/admin/policy", cookie, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice made admin, policy page at B: %d", resp.StatusCode)
	}
	if got := a.auditActions(ctx); len(got) != 1 || got[0] != "console.signin by alice (OIDC sign-in)" {
		t.Fatalf("audit log %q", got)
	}
	rec = httptest.NewRecorder()
	a.s.SignIn(rec, req, "")
	if rec.Code != http.StatusInternalServerError || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("SignIn without a user: %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
}

// TestConsoleLinkAudited: `weft admin console-link` (the admin API's
// console-link on the socket) records the link and its audit entry
// once, and the link it returns signs in at another console.
func TestConsoleLinkAudited(t *testing.T) {
	a := newEnv(t, 0)
	b := a.another()
	ctx := context.Background()
	api := adminapi.NewHandlerClient((&adminapi.Server{Store: a.st, Console: a.s}).Handler())
	reply, err := api.ConsoleLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(reply.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.auditActions(ctx); len(got) != 1 || got[0] != "console.link by  (admin socket)" {
		t.Fatalf("audit log %q, want the one console.link", got)
	}
	if c, status := b.signInAt(u.Query().Get("token")); c == nil {
		t.Fatalf("the admin API's link at another console: %d", status)
	}
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"weft/internal/oidctest"
	"weft/internal/pgtest"
)

// TestServerConsoleAcrossServers runs two `weft server` processes on one
// real PostgreSQL (docs/ha.md; no load balancer: the test is the browser
// that a load balancer sends to either). The link `weft admin --data-dir
// A console-link` prints signs in at server B; the session works at A,
// also after A is killed and started again; the link cannot be spent
// again; signing out at A ends the session at B; `weft admin` at B lists
// the link, the sign-in and the sign-out in the audit log. A browser's
// cookies are per host, not per port, so the one cookie jar sends B's
// session cookie to A as well, as a browser behind a load balancer would.
func TestServerConsoleAcrossServers(t *testing.T) {
	db := pgtest.Start(t, pgtest.Options{}).CreateDB(t)
	start := func(dataDir, u string) *exec.Cmd {
		cmd := startWeftProcess(t, "server", "--listen", strings.TrimPrefix(u, "http://"), "--data-dir", dataDir, "--server-url", u,
			"--db", db, "--stun-listen=", "--metrics-listen=")
		awaitHealthz(t, u)
		return cmd
	}
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	urlA := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	urlB := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	procA := start(dirA, urlA)
	// Servers of one tailnet share one key (docs/ha.md).
	k, err := os.ReadFile(filepath.Join(dirA, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "server.key"), k, 0o600); err != nil {
		t.Fatal(err)
	}
	start(dirB, urlB)

	link, err := url.Parse(adminCLI(t, dirA)("console-link"))
	if err != nil || link.Query().Get("token") == "" || "http://"+link.Host != urlA {
		t.Fatalf("console-link at A printed %v (%v); want a link to %s with a token", link, err, urlA)
	}
	tok := link.Query().Get("token")
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, u string, form url.Values) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, u, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		if method == "POST" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "http://"+req.URL.Host)
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := do("GET", urlB+"/admin/login?token="+tok, nil); code != 200 || !strings.Contains(body, `id="signin"`) {
		t.Fatalf("A's link opened at B: %d\n%s", code, body)
	}
	if code, body := do("POST", urlB+"/admin/login", url.Values{"token": {tok}}); code != 200 || !strings.Contains(body, "Signed in") {
		t.Fatalf("A's link spent at B: %d\n%s", code, body)
	}
	var csrf string
	for _, u := range []string{urlB, urlA} {
		code, body := do("GET", u+"/admin/", nil)
		if code != 200 || !strings.Contains(body, `id="signout"`) {
			t.Fatalf("B's session at %s: %d\n%s", u, code, body)
		}
		csrf = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)[1]
	}
	// A restart signs nobody out, and the link stays spent.
	procA.Process.Kill()
	procA.Wait()
	start(dirA, urlA)
	if code, body := do("GET", urlA+"/admin/", nil); code != 200 || !strings.Contains(body, `id="signout"`) {
		t.Fatalf("the session at A after A's restart: %d\n%s", code, body)
	}
	if code, _ := do("POST", urlA+"/admin/login", url.Values{"token": {tok}}); code != http.StatusUnauthorized {
		t.Fatalf("the spent link again at A: %d", code)
	}
	kept := sessionCookieOf(t, jar, urlB)
	if kept == "" {
		t.Fatal("no session cookie in the jar")
	}
	if code, body := do("POST", urlA+"/admin/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("sign-out at A: %d\n%s", code, body)
	}
	// A browser that kept the cookie past the sign-out (a copy of it) is
	// signed out at B too.
	req, _ := http.NewRequest("GET", urlB+"/admin/", nil)
	req.AddCookie(&http.Cookie{Name: "weft_session", Value: kept})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("signed out at A, the session's cookie at B: %d", resp.StatusCode)
	}
	audit := adminCLI(t, dirB)("audit")
	for _, a := range []string{"console.link", "console.signin", "console.signout"} {
		if !strings.Contains(audit, a) {
			t.Errorf("weft admin audit at B lacks %s:\n%s", a, audit)
		}
	}
}

// sessionCookieOf is the console session cookie jar holds for u's
// console, or "".
func sessionCookieOf(t *testing.T, jar http.CookieJar, u string) string {
	t.Helper()
	p, err := url.Parse(u + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range jar.Cookies(p) {
		if c.Name == "weft_session" {
			return c.Value
		}
	}
	return ""
}

// lbTransport is a browser's view of a load balancer in front of several
// servers: requests to the load balancer's host go to the backend route
// picks for their path, with the Host header kept.
type lbTransport struct {
	host  string
	route func(path string) string // host:port of the backend
}

func (l lbTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != l.host {
		return http.DefaultTransport.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.URL.Host, r.Host = l.route(req.URL.Path), l.host
	return http.DefaultTransport.RoundTrip(r)
}

// TestServerOIDCAcrossServers: two `weft server` processes on one
// PostgreSQL behind one URL (a load balancer, played by the browser's
// transport) with a real OpenID provider. The console sign-in begins at
// server A, the provider's redirect back lands on server B, which
// finishes it; the session then works at A. The callback replayed at A
// is refused: the sign-in was finished once.
func TestServerOIDCAcrossServers(t *testing.T) {
	db := pgtest.Start(t, pgtest.Options{}).CreateDB(t)
	const lbHost = "weft-lb.test"
	lb := "http://" + lbHost
	p := oidctest.Start(t, lb+"/oidc/callback",
		oidctest.User{ID: "sub-alice", Username: "alice", Password: "pw", Email: "alice@example.com", EmailVerified: true})
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "oidc.secret")
	if err := os.WriteFile(secretFile, []byte(p.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrA := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	addrB := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start := func(dataDir, addr string) {
		startWeftProcess(t, "server", "--listen", addr, "--data-dir", dataDir, "--server-url", lb, "--db", db,
			"--stun-listen=", "--metrics-listen=",
			"--oidc-issuer", p.Issuer, "--oidc-client-id", p.ClientID, "--oidc-client-secret-file", secretFile)
		awaitHealthz(t, "http://"+addr)
	}
	start(filepath.Join(dir, "a"), addrA)
	k, err := os.ReadFile(filepath.Join(dir, "a", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "b"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "b", "server.key"), k, 0o600); err != nil {
		t.Fatal(err)
	}
	start(filepath.Join(dir, "b"), addrB)

	var callbacks []string
	toB := false // where /oidc/callback goes
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Transport: lbTransport{host: lbHost, route: func(path string) string {
		if path == "/oidc/callback" && toB {
			return addrB
		}
		return addrA
	}}, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/oidc/callback" {
			callbacks = append(callbacks, req.URL.String())
		}
		return nil
	}}
	toB = true
	code, body, err := p.SignIn(browser, lb+"/oidc/console", "alice", "pw")
	if err != nil || code != 200 || !strings.Contains(body, "Signed in") || len(callbacks) != 1 {
		t.Fatalf("sign-in begun at A, finished at B: %d %v (callbacks %q)\n%s", code, err, callbacks, body)
	}
	resp, err := browser.Get(lb + "/admin/") // routed to A
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `id="signout"`) {
		t.Fatalf("the session made at B, at A: %d\n%s", resp.StatusCode, page)
	}
	toB = false
	resp, err = browser.Get(callbacks[0]) // the same callback, at A
	if err != nil {
		t.Fatal(err)
	}
	again, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(again), "already used") {
		t.Fatalf("the callback replayed at A: %d\n%s", resp.StatusCode, again)
	}
	if audit := adminCLI(t, filepath.Join(dir, "a"))("audit"); !strings.Contains(audit, "console.signin") || !strings.Contains(audit, "OIDC sign-in") {
		t.Fatalf("weft admin audit at A:\n%s", audit)
	}
}

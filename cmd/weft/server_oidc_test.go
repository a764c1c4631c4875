package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/oidctest"
	"weft/internal/store"
)

// TestServerOIDCLogin runs weft server with a real OpenID provider
// (oidctest: zitadel's pkg/op) and drives, over HTTP as a browser would:
// `weft up` without a key prints a URL; alice opens it, signs in at the
// provider, and the node joins as her user; the URL is then spent.
// Someone else at the provider with the same email is another user, not
// alice's account; a person outside the allowed domains is refused; the
// console sign-in starts a session as the user.
func TestServerOIDCLogin(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "server")
	url := freeURL(t)
	p := oidctest.Start(t, url+"/oidc/callback",
		oidctest.User{ID: "sub-alice", Username: "alice", Password: "pw", Email: "alice@example.com", EmailVerified: true, Groups: []string{"eng"}},
		oidctest.User{ID: "sub-mallory", Username: "mallory", Password: "pw", Email: "alice@example.com", EmailVerified: true},
		oidctest.User{ID: "sub-bob", Username: "bob", Password: "pw", Email: "bob@other.org", EmailVerified: true})
	secretFile := filepath.Join(dir, "oidc.secret")
	os.WriteFile(secretFile, []byte(p.ClientSecret+"\n"), 0o600)
	startServer(t, url, dataDir, "--oidc-issuer", p.Issuer, "--oidc-client-id", p.ClientID, "--oidc-client-secret-file", secretFile,
		"--oidc-allowed-domains", "example.com")
	sock, _ := startDaemon(t, dir, "node")

	// weft up without a key, its output read as it comes.
	pr, pw := io.Pipe()
	var upErr strings.Builder
	upDone := make(chan int, 1)
	go func() {
		upDone <- run(context.Background(), []string{"--socket", sock, "up", "--server", url, "--hostname", "jeju"}, pw, &upErr)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var loginURL string
	var out []string
	for loginURL == "" && sc.Scan() {
		out = append(out, sc.Text())
		if u := strings.TrimSpace(sc.Text()); strings.HasPrefix(u, url+"/login/node/") {
			loginURL = u
		}
	}
	if loginURL == "" {
		t.Fatalf("no login URL: %q %s", out, upErr.String())
	}
	go func() {
		for sc.Scan() {
			out = append(out, sc.Text())
		}
	}()
	browser := func() *http.Client { jar, _ := cookiejar.New(nil); return &http.Client{Jar: jar} }
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body, err := p.SignIn(browser(), loginURL, "alice", "pw")
	if err != nil || code != 200 || !strings.Contains(body, "Signed in as alice") {
		t.Fatalf("alice signs in for the node: %d %v %s", code, err, body)
	}
	select {
	case c := <-upDone:
		if c != 0 {
			t.Fatalf("weft up: exit %d: %s", c, upErr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("weft up did not finish after the sign-in")
	}
	admin := adminCLI(t, dataDir)
	var ns []adminapi.Node
	json.Unmarshal([]byte(admin("nodes", "list", "--json")), &ns)
	if len(ns) != 1 || ns[0].Name != "jeju" || ns[0].User != "alice" {
		t.Fatalf("node after OIDC login: %+v", ns)
	}
	// The URL was for one sign-in.
	if code, body, _ := p.SignIn(browser(), loginURL, "alice", "pw"); code == 200 || !strings.Contains(body+fmt.Sprint(code), "404") && !strings.Contains(body, "not valid") {
		t.Fatalf("second use of the login URL: %d %s", code, body)
	}

	// Same email, another subject: another user, signed in to the
	// console as a member who sees none of alice's nodes.
	if code, body := get(url + "/admin/"); code != http.StatusUnauthorized || !strings.Contains(body, `href="/oidc/console"`) {
		t.Fatalf("console sign-in page without the identity provider button: %d %s", code, body)
	}
	mb := browser()
	if code, body, err := p.SignIn(mb, url+"/oidc/console", "mallory", "pw"); err != nil || code != 200 || !strings.Contains(body, "/admin/") {
		t.Fatalf("mallory signs in to the console: %d %v %s", code, err, body)
	}
	resp, err := mb.Get(url + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `id="signout"`) || strings.Contains(string(page), "jeju") {
		t.Fatalf("mallory's console: %d %s", resp.StatusCode, page)
	}
	var us []store.User
	json.Unmarshal([]byte(admin("users", "list", "--json")), &us)
	if len(us) != 2 || us[0].Name != "alice" || us[1].Name != "alice-2" || us[0].Email != "alice@example.com" ||
		strings.Join(us[0].Groups, ",") != "eng" || us[1].Role != store.RoleMember {
		t.Fatalf("users after two people with one email signed in: %+v", us)
	}
	// Outside the allowed domains: refused, no user made.
	if code, body, _ := p.SignIn(browser(), url+"/oidc/console", "bob", "pw"); code != http.StatusForbidden || !strings.Contains(body, "not allowed") {
		t.Fatalf("bob: %d %s", code, body)
	}
	json.Unmarshal([]byte(admin("users", "list", "--json")), &us)
	if len(us) != 2 {
		t.Fatalf("a refused sign-in made a user: %+v", us)
	}
	if o := admin("audit"); !strings.Contains(o, "login.approve") || !strings.Contains(o, "OIDC sign-in") {
		t.Fatalf("audit:\n%s", o)
	}
	// bob's refusal is in the audit log, naming him and his subject.
	var audit []store.AuditEntry
	json.Unmarshal([]byte(admin("audit", "--json")), &audit)
	refused := slices.IndexFunc(audit, func(e store.AuditEntry) bool { return e.Action == "signin.refused" })
	if refused < 0 || audit[refused].Actor != "bob@other.org" || audit[refused].Target != "subject sub-bob" ||
		!strings.Contains(audit[refused].Detail, `"for":"console"`) {
		t.Fatalf("no signin.refused entry for bob in the audit log: %+v", audit)
	}
}

//go:build linux

package browsertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// badPolicy has a mistake on line 3 (a missing comma), goodPolicy none;
// goodPolicy's test must pass for it to be saved.
const (
	badPolicy  = "{\n  \"acls\": [\n    {\"action\": \"accept\" \"src\": [\"alice@\"], \"dst\": [\"*:*\"]},\n  ],\n}\n"
	goodPolicy = "{\n  // alice's nodes reach everything.\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": [\"*:*\"]},\n  ],\n}\n"
)

// TestBrowserConsole signs in to a real weft server's console in
// Chromium and uses it as a person would: the policy editor refuses a
// policy with a mistake and marks its line, then saves a correct one; a
// pre-auth key is shown once; a form posted from another origin changes
// nothing; signing out ends the session.
func TestBrowserConsole(t *testing.T) {
	ctx := newBrowser(t)
	srv := startServer(t)
	srv.admin("users", "create", "alice")
	srv.admin("users", "create", "bob")
	srv.admin("keys", "create", "--user", "alice", "--reusable", "--expiry", "24h")
	base := srv.URL

	step(t, "sign in", func(t *testing.T) {
		if st := open(t, ctx, base+"/admin/"); st != http.StatusUnauthorized {
			t.Fatalf("before signing in, /admin/ answered %d, want 401", st)
		}
		signIn(t, ctx, srv.admin("console-link"), base)
		if page := html(t, ctx); !strings.Contains(page, "0 nodes") {
			t.Fatalf("nodes page of an empty tailnet:\n%s", page)
		}
	})

	step(t, "policy editor", func(t *testing.T) {
		do(t, ctx, "open the policy editor",
			chromedp.Navigate(base+"/admin/policy"),
			chromedp.WaitVisible(chromedp.ID("policy")),
			chromedp.SetValue(chromedp.ID("policy"), badPolicy),
			chromedp.Click(chromedp.ID("save")),
			chromedp.WaitVisible(chromedp.ID("policy-errors")),
		)
		bad := get(t, ctx, "read the marked lines", chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("#listing .line.bad")).map(e => e.dataset.line)`))
		if len(bad) != 1 || bad[0] != "3" {
			t.Fatalf("marked lines %v, want [3]", bad)
		}
		screenshot(t, ctx, "policy-error")
		if out := srv.admin("policy", "get"); strings.Contains(out, `"accept" "src"`) {
			t.Fatalf("the refused policy was saved:\n%s", out)
		}
		do(t, ctx, "save a correct policy",
			chromedp.SetValue(chromedp.ID("policy"), goodPolicy),
			chromedp.Click(chromedp.ID("save")),
			chromedp.WaitVisible(chromedp.ID("notice")),
		)
		if page := html(t, ctx); !strings.Contains(page, "Version 1 is in force") {
			t.Fatalf("after saving:\n%s", page)
		}
		if got := srv.admin("policy", "get"); !strings.Contains(got, "alice's nodes reach everything") {
			t.Fatalf("weft admin policy get after saving in the console:\n%s", got)
		}
	})

	step(t, "pre-auth key shown once", func(t *testing.T) {
		do(t, ctx, "create a key",
			chromedp.Navigate(base+"/admin/keys"),
			chromedp.WaitVisible(chromedp.ID("createkey")),
			chromedp.SetValue(chromedp.ID("keyuser"), "bob"),
			chromedp.Click(chromedp.ID("createkey")),
			chromedp.WaitVisible(chromedp.ID("secret")),
		)
		secret := strings.TrimSpace(get(t, ctx, "read the key", chromedp.Text(chromedp.ID("secret"))))
		if page := html(t, ctx); len(secret) < 20 || strings.Count(page, secret) != 1 {
			t.Fatalf("new key %q shown %d times", secret, strings.Count(page, secret))
		}
		screenshot(t, ctx, "keys-new")
		if !strings.Contains(srv.admin("keys", "list", "--user", "bob"), "bob") {
			t.Fatal("weft admin keys list does not list bob's new key")
		}
		for _, p := range []string{"/admin/keys", "/admin/", "/admin/users", "/admin/audit"} {
			open(t, ctx, base+p)
			if strings.Contains(html(t, ctx), secret) {
				t.Fatalf("%s shows the key again", p)
			}
		}
		screenshot(t, ctx, "audit")
	})

	step(t, "CSRF from another origin", func(t *testing.T) {
		// Another origin on the same host (another port: same site, so
		// even the SameSite=Strict cookie is sent) posts the console's
		// forms, as an attacker's page would.
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/admin/users">
<input name="name" value="mallory"><input name="csrf" value="guess"></form>
<script>document.getElementById("f").submit()</script>`, base)
		}))
		defer evil.Close()
		before := srv.admin("users", "list")
		do(t, ctx, "visit the other origin's page",
			chromedp.Navigate(evil.URL),
			chromedp.WaitVisible(chromedp.CSS("p.message")),
		)
		if page := html(t, ctx); !strings.Contains(page, "CSRF check failed") {
			t.Fatalf("the cross-origin post was not refused:\n%s", page)
		}
		if after := srv.admin("users", "list"); after != before || strings.Contains(after, "mallory") {
			t.Fatalf("users changed by a cross-origin post:\nbefore %s\nafter %s", before, after)
		}
	})

	step(t, "pages", func(t *testing.T) {
		for _, p := range []struct{ path, name string }{{"/admin/users", "users"}, {"/admin/dns", "dns"}, {"/admin/keys", "keys"}} {
			if st := open(t, ctx, base+p.path); st != 200 {
				t.Fatalf("%s: %d", p.path, st)
			}
			screenshot(t, ctx, p.name)
		}
	})

	step(t, "sign out", func(t *testing.T) {
		do(t, ctx, "sign out",
			chromedp.Navigate(base+"/admin/"),
			chromedp.WaitVisible(chromedp.ID("signout")),
			chromedp.Click(chromedp.ID("signout")),
			chromedp.WaitVisible(chromedp.CSS("p.message")),
		)
		for _, c := range cookies(t, ctx, base+"/admin/") {
			if c.Name == "weft_session" {
				t.Fatalf("session cookie still held after signing out: %+v", c)
			}
		}
		if st := open(t, ctx, base+"/admin/keys"); st != http.StatusUnauthorized || strings.Contains(html(t, ctx), "bob") {
			t.Fatalf("after signing out /admin/keys answered %d", st)
		}
	})
}

// step runs a subtest and stops the test when it fails: later steps build
// on earlier ones (a signed-in browser).
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

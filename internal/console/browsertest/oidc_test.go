//go:build linux

package browsertest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"weft/internal/oidctest"
)

// TestBrowserOIDCSignIn signs in to the console with the tailnet's
// identity provider (a real OpenID provider, internal/oidctest) in
// Chromium: the sign-in page's button leads to the provider's login
// form, and its redirect back lands signed in on the nodes page. The
// console is browsed as localhost and the provider is 127.0.0.1, two
// different sites as in production, so the SameSite=Strict cookie must
// survive a sign-in that another site's navigation finished. The new
// user is a member: no admin menu, no other user's nodes.
func TestBrowserOIDCSignIn(t *testing.T) {
	ctx := newBrowser(t)
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	serverURL := "http://localhost:" + port
	p := oidctest.Start(t, serverURL+"/oidc/callback", oidctest.User{ID: "sub-carol-7", Username: "carol",
		Password: "carol-password", Email: "carol@example.com", EmailVerified: true})
	secretFile := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(p.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServerAt(t, t.TempDir(), addr, serverURL,
		"--oidc-issuer", p.Issuer, "--oidc-client-id", p.ClientID, "--oidc-client-secret-file", secretFile)

	if st := open(t, ctx, serverURL+"/admin/"); st != http.StatusUnauthorized {
		t.Fatalf("before signing in: %d", st)
	}
	screenshot(t, ctx, "sign-in")
	do(t, ctx, "sign in at the provider",
		chromedp.Click(chromedp.ID("oidc")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "carol"),
		chromedp.SendKeys(chromedp.ID("password"), "carol-password"),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("nodes")),
	)
	page := html(t, ctx)
	if !strings.Contains(page, "0 nodes") || strings.Contains(page, `href="/admin/policy"`) {
		t.Fatalf("carol's console:\n%s", page)
	}
	var found bool
	for _, c := range cookies(t, ctx, serverURL+"/admin/") {
		found = found || c.Name == "weft_session"
	}
	if !found {
		t.Fatal("no session cookie after signing in with the provider")
	}
	if out := srv.admin("users", "list"); !strings.Contains(out, "carol") {
		t.Fatalf("weft admin users list after carol's sign-in:\n%s", out)
	}
}

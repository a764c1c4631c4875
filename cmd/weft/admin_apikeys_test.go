package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"weft/internal/store"
)

// TestAdminAPIKeysCLI drives weft admin apikeys create/list/revoke against
// a real admin socket and checks the keys through the store the REST API
// authenticates with.
func TestAdminAPIKeysCLI(t *testing.T) {
	e := startAdmin(t)
	ctx := context.Background()

	out := e.ok("apikeys", "create", "--expiry", "90d")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "wa") || strings.ContainsAny(key, " \t") {
		t.Fatalf("apikeys create printed %q, want the key alone on the last line", out)
	}
	got, err := e.st.CheckAPIKey(ctx, key)
	if err != nil {
		t.Fatalf("created key does not check: %v", err)
	}
	if d := time.Until(got.Expiry); d < 89*24*time.Hour || d > 90*24*time.Hour {
		t.Fatalf("--expiry 90d gave expiry %v (in %v)", got.Expiry, d)
	}
	never := strings.TrimSpace(e.ok("apikeys", "create", "--expiry", "0"))

	out = e.ok("apikeys", "list")
	if strings.Contains(out, key) || !strings.Contains(out, got.Prefix) || !strings.Contains(out, "never") {
		t.Fatalf("apikeys list:\n%s", out)
	}
	if out := e.ok("apikeys", "revoke", key); out != "revoked API key "+got.Prefix+"\n" {
		t.Fatalf("apikeys revoke printed %q", out)
	}
	if _, err := e.st.CheckAPIKey(ctx, key); !errors.Is(err, store.ErrAPIKeyInvalid) {
		t.Fatalf("revoked key still checks: %v", err)
	}
	if _, err := e.st.CheckAPIKey(ctx, never); err != nil {
		t.Fatalf("other key stopped working: %v", err)
	}
	var ks []store.APIKey
	if err := json.Unmarshal([]byte(e.ok("apikeys", "list", "--json")), &ks); err != nil || len(ks) != 2 ||
		ks[0].RevokedAt.IsZero() || !ks[1].Expiry.IsZero() {
		t.Fatalf("apikeys list --json: %+v, %v", ks, err)
	}

	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"apikeys", "create", "--expiry", "-1d"}, 2},
		{[]string{"apikeys", "create", "--expiry", "soon"}, 2},
		{[]string{"apikeys", "revoke", "nonsense"}, 2},
		{[]string{"apikeys", "revoke", "wa000000000000"}, 1},
	} {
		if code, _, errs := e.admin(c.args...); code != c.code || errs == "" {
			t.Errorf("weft admin %s: exit %d (%q), want %d with a message", strings.Join(c.args, " "), code, errs, c.code)
		}
	}
	if ks, _ := e.st.ListAPIKeys(ctx); len(ks) != 2 {
		t.Fatalf("refused commands changed the keys: %+v", ks)
	}
}

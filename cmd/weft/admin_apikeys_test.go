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

// TestAdminAuditAndRoles: changes made with weft admin are in `weft admin
// audit` (newest first, made by the server's administrator through the
// admin socket); `users role` makes an admin; `apikeys create --user`
// makes a key that lists as that user's.
func TestAdminAuditAndRoles(t *testing.T) {
	e := startAdmin(t)
	e.ok("users", "create", "alice")
	if out := e.ok("users", "role", "alice", "admin"); !strings.Contains(out, "alice is now admin") {
		t.Fatalf("users role: %q", out)
	}
	if code, _, errs := e.admin("users", "role", "alice", "root"); code != 2 || !strings.Contains(errs, "role") {
		t.Fatalf("users role root: exit %d %q; want 2 with a message", code, errs)
	}
	if out := e.ok("users", "list"); !strings.Contains(out, "ROLE") || !strings.Contains(out, "admin") {
		t.Fatalf("users list: %q", out)
	}
	key := lastLine(e.ok("apikeys", "create", "--user", "alice"))
	prefix, _, _ := strings.Cut(key, "_")
	if out := e.ok("apikeys", "list"); !strings.Contains(out, prefix) || !strings.Contains(out, "alice") {
		t.Fatalf("apikeys list: %q", out)
	}
	out := e.ok("audit")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], "apikey.create") || !strings.Contains(lines[2], "user.role") ||
		!strings.Contains(lines[3], "user.create") || !strings.Contains(lines[3], "admin socket") || strings.Contains(out, key) {
		t.Fatalf("audit:\n%s", out)
	}
	var es []store.AuditEntry
	if err := json.Unmarshal([]byte(e.ok("audit", "--json", "--limit", "1")), &es); err != nil || len(es) != 1 || es[0].Action != "apikey.create" {
		t.Fatalf("audit --json --limit 1: %+v %v", es, err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

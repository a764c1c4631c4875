package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/key"
	"weft/internal/store"
)

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.hujson")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAdminPolicy drives weft admin policy get|set|check|history and the
// policy's say over tags: a refused policy leaves the old one in force.
func TestAdminPolicy(t *testing.T) {
	e := startAdmin(t)
	ctx := context.Background()
	if out := e.ok("policy", "get"); !strings.Contains(out, "no policy is set: every node may reach every other node") {
		t.Fatalf("policy get with none: %q", out)
	}
	if out := e.ok("policy", "history"); !strings.Contains(out, "no policy is set") {
		t.Fatalf("policy history with none: %q", out)
	}
	e.ok("users", "create", "alice")
	e.ok("users", "create", "bob")
	k := strings.TrimSpace(e.ok("keys", "create", "--user", "alice", "--reusable"))
	for _, h := range []string{"busan", "mac", "pc"} {
		if _, err := e.st.Register(ctx, store.RegisterRequest{AuthKey: k, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: h}); err != nil {
			t.Fatal(err)
		}
	}

	good := `{
	"groups": {"group:fukuoka": ["mac", "pc"]},
	"tagOwners": {"tag:server": ["bob@"]},
	"acls": [{"action": "accept", "src": ["group:fukuoka"], "dst": ["busan:22", "autogroup:internet:*"]}],
	"tests": [{"src": "mac", "accept": ["busan:22"], "deny": ["busan:80"]}],
}`
	if out := e.ok("policy", "check", writePolicy(t, good)); !strings.Contains(out, "valid and its tests pass") {
		t.Fatalf("check: %q", out)
	}
	if out := e.ok("policy", "history"); !strings.Contains(out, "no policy is set") {
		t.Fatalf("check put the policy in force: %q", out)
	}
	if out := e.ok("policy", "set", writePolicy(t, good)); out != "policy version 1 is in force\n" {
		t.Fatalf("set: %q", out)
	}

	refused := []struct{ name, body, want string }{
		{"syntax", "{\n  \"acls\": [\n    {\"action\": \"accept\",, }\n  ]\n}", "line 3, column 25"},
		{"unknown group", "{\"acls\": [\n {\"action\": \"accept\", \"src\": [\"group:nope\"], \"dst\": [\"*:*\"]}]}", `line 2, column 31: unknown group "group:nope"`},
		{"unknown user", `{"acls": [{"action": "accept", "src": ["carol@"], "dst": ["*:*"]}]}`, `unknown user "carol@"`},
		{"unknown node", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["nas:22"]}]}`, `unknown host or node "nas"`},
		{"failing test", strings.Replace(good, `"deny": ["busan:80"]`, `"deny": ["busan:22"]`, 1), "test failed: mac to busan port 22 (tcp) is accepted"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			for _, verb := range []string{"check", "set"} {
				code, _, errs := e.admin("policy", verb, writePolicy(t, tt.body))
				if code != 2 || !strings.Contains(errs, tt.want) || strings.Contains(errs, "invalid argument") || strings.Contains(errs, "--help") {
					t.Fatalf("policy %s: exit %d, stderr %q; want 2 and %q alone", verb, code, errs, tt.want)
				}
				if verb == "set" && !strings.Contains(errs, "refused; the policy in force is unchanged") {
					t.Fatalf("policy set does not say the old policy stays: %q", errs)
				}
			}
			if out := e.ok("policy", "get"); out != good+"\n" {
				t.Fatalf("after a refused set the policy in force is\n%s", out)
			}
		})
	}

	second := strings.Replace(good, "busan:22", "busan:22,2222", 1)
	e.ok("policy", "set", writePolicy(t, second))
	out := e.ok("policy", "history")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "in force") || strings.Contains(lines[1], "in force") ||
		!strings.Contains(lines[2], "server administrator (admin socket)") {
		t.Fatalf("history:\n%s", out)
	}
	if out := e.ok("policy", "get", "--version", "1"); out != good+"\n" {
		t.Fatalf("get --version 1:\n%s", out)
	}
	if out := e.ok("policy", "get"); out != second+"\n" {
		t.Fatalf("get:\n%s", out)
	}
	if code, _, errs := e.admin("policy", "get", "--version", "9"); code != 1 || !strings.Contains(errs, "policy version 9") {
		t.Fatalf("get --version 9: %d %q", code, errs)
	}

	// tagOwners: bob may make tag:server keys, alice may not; tags
	// outside tagOwners are refused on nodes.
	if code, _, errs := e.admin("keys", "create", "--user", "alice", "--tags", "tag:server"); code != 2 || !strings.Contains(errs, `user "alice" may not apply tag:server`) {
		t.Fatalf("alice's tagged key: %d %q", code, errs)
	}
	e.ok("keys", "create", "--user", "bob", "--tags", "tag:server")
	if code, _, errs := e.admin("nodes", "tag", "pc", "tag:nope"); code != 2 || !strings.Contains(errs, "not in the policy's tagOwners") {
		t.Fatalf("nodes tag with an undefined tag: %d %q", code, errs)
	}
	if out := e.ok("nodes", "tag", "pc", "tag:server"); out != "node pc is owned by tag:server\n" {
		t.Fatalf("nodes tag: %q", out)
	}
	var n struct {
		User string   `json:"user"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(e.ok("nodes", "show", "pc", "--json")), &n); err != nil || n.User != "" || len(n.Tags) != 1 {
		t.Fatalf("pc after tagging: %+v %v", n, err)
	}

	// weft admin routes (with no subcommand) lists, naming who approved.
	busan, _ := e.st.GetNodeByName(ctx, "busan")
	exit := netip.MustParsePrefix("0.0.0.0/0")
	e.st.SetAdvertisedRoutes(ctx, busan.ID, []netip.Prefix{exit, netip.MustParsePrefix("192.168.1.0/24")})
	e.st.AutoApproveRoute(ctx, busan.ID, exit, "autoApprovers.exitNode: alice@")
	e.ok("routes", "approve", "busan", "192.168.1.0/24")
	out = e.ok("routes")
	if !strings.Contains(out, "APPROVED BY") || !strings.Contains(out, "autoApprovers.exitNode: alice@") || !strings.Contains(out, "admin") {
		t.Fatalf("routes:\n%s", out)
	}
}

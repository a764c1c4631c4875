package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/adminapi"
	"weft/internal/key"
	"weft/internal/restapi"
	"weft/internal/store"
)

// remoteEnv is startAdmin plus the REST API on the same store, served as
// weft server serves it, and API key files for it.
type remoteEnv struct {
	*adminEnv
	url                 string
	adminKey, memberKey string // files
	busan, pc           string // node names: busan is alice's and advertises an exit route
}

func startRemote(t *testing.T, serve func(http.Handler) *httptest.Server) *remoteEnv {
	t.Helper()
	e := startAdmin(t)
	ctx := context.Background()
	mux := http.NewServeMux()
	mux.Handle("/api/", &restapi.Handler{Store: e.st, Admin: (&adminapi.Server{Store: e.st}).APIHandler()})
	srv := serve(mux)
	t.Cleanup(srv.Close)
	r := &remoteEnv{adminEnv: e, url: srv.URL}
	e.ok("users", "create", "alice")
	e.ok("users", "create", "bob")
	for i, u := range []string{"alice", "bob"} {
		secret, _, err := e.st.CreateAuthKey(ctx, store.AuthKeyRequest{User: u})
		if err != nil {
			t.Fatal(err)
		}
		n, err := e.st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: []string{"busan", "pc"}[i]})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			r.busan = n.Name
			if _, err := e.st.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}); err != nil {
				t.Fatal(err)
			}
		} else {
			r.pc = n.Name
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r.adminKey = write("admin.key", lastLine(e.ok("apikeys", "create")))
	r.memberKey = write("alice.key", lastLine(e.ok("apikeys", "create", "--user", "alice")))
	return r
}

// remote runs weft admin --server URL --api-key-file keyFile args...
func (r *remoteEnv) remote(keyFile string, extra []string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	full := append(append([]string{"admin", "--server", r.url, "--api-key-file", keyFile}, extra...), args...)
	code := run(context.Background(), full, &out, &errb)
	return code, out.String(), errb.String()
}

// TestAdminRemote: weft admin --server URL --api-key-file F prints what
// the socket prints for the same reads, makes the same changes with the
// same confirmations, and a member's key is held to the member's nodes.
func TestAdminRemote(t *testing.T) {
	r := startRemote(t, httptest.NewServer)
	polFile := filepath.Join(t.TempDir(), "policy.hujson")
	os.WriteFile(polFile, []byte(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`), 0o600)
	r.ok("policy", "set", polFile)
	for _, args := range [][]string{
		{"nodes", "list"}, {"nodes", "show", r.busan}, {"routes", "list"}, {"users", "list"},
		{"policy", "get"}, {"policy", "history"}, {"keys", "list"}, {"nodes", "list", "--json"},
	} {
		want := r.ok(args...)
		code, got, errs := r.remote(r.adminKey, nil, args...)
		if code != 0 || got != want {
			t.Fatalf("%v: remote exit %d %s\nremote:\n%s\nsocket:\n%s", args, code, errs, got, want)
		}
	}
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"routes", "approve", r.busan, "exit"}, ""},
		{[]string{"routes", "reject", r.busan, "exit"}, ""},
		{[]string{"nodes", "rename", r.pc, "jeju"}, "renamed node 2 to jeju"},
		{[]string{"nodes", "expire", "jeju"}, "expired the key of node jeju"},
		{[]string{"policy", "set", polFile}, ""},
		{[]string{"keys", "create", "--user", "bob"}, "wk"},
		{[]string{"nodes", "delete", "jeju"}, "deleted node jeju"},
	} {
		code, out, errs := r.remote(r.adminKey, nil, c.args...)
		if code != 0 || !strings.Contains(out, c.out) {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", c.args, code, out, errs)
		}
	}
	ns, _ := r.st.ListNodes(context.Background())
	if len(ns) != 1 || ns[0].Name != r.busan || len(ns[0].ApprovedRoutes) != 0 {
		t.Fatalf("after remote changes: %+v", ns)
	}
	if out := r.ok("audit"); !strings.Contains(out, "routes.approve") || !strings.Contains(out, "API key wa") {
		t.Fatalf("remote changes not in the audit log:\n%s", out)
	}

	// A member's key: only alice's node, and no route approval.
	if code, out, errs := r.remote(r.memberKey, nil, "nodes", "list"); code != 0 || !strings.Contains(out, r.busan) || strings.Count(out, "\n") != 2 {
		t.Fatalf("member nodes list: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := r.remote(r.memberKey, nil, "routes", "approve", r.busan, "exit"); code != 1 || !strings.Contains(errs, "needs an admin") {
		t.Fatalf("member routes approve: exit %d %q", code, errs)
	}
	// API keys are made only on the server's machine.
	if code, _, errs := r.remote(r.adminKey, nil, "apikeys", "create"); code == 0 || !strings.Contains(errs, "server's machine") {
		t.Fatalf("remote apikeys create: exit %d %q", code, errs)
	}
	// Usage errors.
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"admin", "--server", r.url, "nodes", "list"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--api-key-file") {
		t.Fatalf("--server without a key file: exit %d %q", code, errb.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("wa000000000000_00\n"), 0o600)
	if code, _, errs := r.remote(bad, nil, "nodes", "list"); code != 1 || !strings.Contains(errs, "not valid") {
		t.Fatalf("wrong key: exit %d %q", code, errs)
	}
}

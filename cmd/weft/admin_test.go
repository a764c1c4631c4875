package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tailnet"
	"weft/internal/tstest/storetest"
)

// adminEnv runs an admin API server on a temporary data directory, as weft
// server would, and runs weft admin commands against it.
type adminEnv struct {
	t   *testing.T
	dir string
	st  store.Store
}

func startAdmin(t *testing.T) *adminEnv {
	t.Helper()
	dir := t.TempDir()
	st := storetest.Open(t, filepath.Join(dir, "weft.db"), store.Options{}) // closed after the server stopped
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sock := adminapi.SocketPath(dir)
	go func() { done <- (&adminapi.Server{Store: st}).Serve(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	return &adminEnv{t: t, dir: dir, st: st}
}

// admin runs "weft admin --data-dir DIR args..." and returns the exit
// status, stdout and stderr.
func (e *adminEnv) admin(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"admin", "--data-dir", e.dir}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its stdout.
func (e *adminEnv) ok(args ...string) string {
	e.t.Helper()
	code, out, errs := e.admin(args...)
	if code != 0 {
		e.t.Fatalf("weft admin %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func TestAdminCLI(t *testing.T) {
	e := startAdmin(t)
	ctx := context.Background()

	if out := e.ok("users", "create", "alice"); out != "created user alice\n" {
		t.Fatalf("users create: %q", out)
	}
	e.ok("users", "create", "bob")
	out := e.ok("users", "list")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "ID  NAME") ||
		!strings.Contains(lines[1], "alice") {
		t.Fatalf("users list:\n%s", out)
	}
	var users []store.User
	if err := json.Unmarshal([]byte(e.ok("users", "list", "--json")), &users); err != nil || len(users) != 2 {
		t.Fatalf("users list --json: %v %v", users, err)
	}

	secret := strings.TrimSpace(e.ok("keys", "create", "--user", "alice", "--reusable", "--tags", "tag:exit,tag:server", "--expiry", "48h"))
	if strings.ContainsAny(secret, " \n\t") || !strings.HasPrefix(secret, "wk") {
		t.Fatalf("keys create printed %q, want the key alone", secret)
	}
	oneOff := strings.TrimSpace(e.ok("keys", "create", "--user", "alice", "--expiry", "0"))
	out = e.ok("keys", "list")
	if !strings.Contains(out, secret[:14]) || strings.Contains(out, secret) || !strings.Contains(out, "tag:exit,tag:server") ||
		!strings.Contains(out, "never") {
		t.Fatalf("keys list:\n%s", out)
	}

	// Register nodes directly in the store, as the control server would.
	busan, err := e.st.Register(ctx, store.RegisterRequest{AuthKey: oneOff, MachineKey: key.NewMachine().Public(),
		NodeKey: key.NewNode().Public(), Hostname: "busan"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
		NodeKey: key.NewNode().Public(), Hostname: "busan"}); err != nil {
		t.Fatal(err)
	}
	out = e.ok("keys", "list", "--user", "alice")
	if !strings.Contains(out, "used") {
		t.Fatalf("one-off key not shown used:\n%s", out)
	}
	if out := e.ok("keys", "expire", secret); out != "expired key "+secret[:14]+"\n" {
		t.Fatalf("keys expire printed %q", out)
	}

	out = e.ok("nodes", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "busan ") || !strings.Contains(lines[1], busan.IPv4.String()) ||
		!strings.Contains(lines[2], "busan-2") || !strings.Contains(lines[2], "tag:exit,tag:server") {
		t.Fatalf("nodes list:\n%s", out)
	}
	// Columns line up: every row has IPV4 where the header has it.
	col := strings.Index(lines[0], "IPV4")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "100.") {
			t.Fatalf("misaligned row %q (IPV4 at %d)", l, col)
		}
	}
	t.Logf("nodes list:\n%s", out)
	var nodes []adminapi.Node
	if err := json.Unmarshal([]byte(e.ok("nodes", "list", "--json")), &nodes); err != nil || len(nodes) != 2 || nodes[0].IPv4 != busan.IPv4 {
		t.Fatalf("nodes list --json: %+v %v", nodes, err)
	}
	t.Logf("nodes show busan:\n%s\nkeys list:\n%s", e.ok("nodes", "show", "busan"), e.ok("keys", "list"))
	if out := e.ok("nodes", "show", "busan"); !strings.Contains(out, busan.NodeKey.String()) || !strings.Contains(out, "Owner:") {
		t.Fatalf("nodes show:\n%s", out)
	}
	e.ok("nodes", "rename", "busan-2", "exit")
	if out := e.ok("nodes", "expire", "exit"); !strings.Contains(out, "expired") {
		t.Fatalf("nodes expire: %q", out)
	}

	exitNode, _ := e.st.GetNodeByName(ctx, "exit")
	if _, err := e.st.SetAdvertisedRoutes(ctx, exitNode.ID, tailnet.ExitRoutes()); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("routes", "approve", "exit", "exit"); out != "exit: routes in effect: 0.0.0.0/0, ::/0\n" {
		t.Fatalf("routes approve: %q", out)
	}
	if out := e.ok("routes", "reject", "exit", "::/0"); out != "exit: routes in effect: 0.0.0.0/0\n" {
		t.Fatalf("routes reject: %q", out)
	}
	var rs []store.Route
	if err := json.Unmarshal([]byte(e.ok("routes", "list", "--json")), &rs); err != nil || len(rs) != 2 ||
		rs[0].Prefix != netip.MustParsePrefix("0.0.0.0/0") || !rs[0].Enabled() || rs[1].Approved {
		t.Fatalf("routes list --json: %+v %v", rs, err)
	}

	e.ok("nodes", "delete", "exit")
	if out := e.ok("nodes", "list", "--json"); strings.Contains(out, `"exit"`) {
		t.Fatalf("deleted node still listed: %s", out)
	}
}

func TestAdminCLIErrors(t *testing.T) {
	e := startAdmin(t)
	e.ok("users", "create", "alice")
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"duplicate user", []string{"users", "create", "alice"}, 1, `already exists: user "alice"`},
		{"bad user name", []string{"users", "create", "Alice"}, 2, "may hold only a-z"},
		{"unknown user", []string{"users", "delete", "bob"}, 1, `no user "bob"`},
		{"key without user", []string{"keys", "create"}, 2, "needs --user"},
		{"bad tag", []string{"keys", "create", "--user", "alice", "--tags", "server"}, 2, "must look like tag:server"},
		{"bad expiry", []string{"keys", "create", "--user", "alice", "--expiry", "soon"}, 2, "positive duration"},
		{"unknown node", []string{"nodes", "show", "nope"}, 1, `no node named "nope"`},
		{"bad route", []string{"routes", "approve", "busan", "10.0.0.1/8"}, 2, "did you mean 10.0.0.0/8"},
		{"missing args", []string{"nodes", "rename", "x"}, 2, "accepts 2 arg(s)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := e.admin(tt.args...)
			if code != tt.wantCode || !strings.Contains(errs, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errs, tt.wantCode, tt.wantErr)
			}
		})
	}
	t.Run("server not running", func(t *testing.T) {
		var out, errb bytes.Buffer
		dir := t.TempDir()
		code := run(context.Background(), []string{"admin", "--data-dir", dir, "users", "list"}, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), "is `weft server --data-dir "+dir+"` running?") {
			t.Fatalf("exit %d, stderr %q", code, errb.String())
		}
	})
}

package adminapi

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tailnet"
	"weft/internal/tstest"
	"weft/internal/tstest/storetest"
	"weft/internal/wire"
)

// recorder is a Notifier that remembers what it was told.
type recorder struct {
	mu      sync.Mutex
	changed []wire.NodeID
	removed []wire.NodeID
	dns     int // DNSChanged calls
}

func (r *recorder) NodeChanged(id wire.NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changed = append(r.changed, id)
}

func (r *recorder) DNSChanged() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dns++
}

func (r *recorder) NodeRemoved(id wire.NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, id)
}

func (r *recorder) take() (changed, removed []wire.NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed, removed = r.changed, r.removed
	r.changed, r.removed = nil, nil
	return changed, removed
}

type env struct {
	st   store.Store
	db   string // the SQLite file of st
	rec  *recorder
	c    *Client
	sock string
}

// start runs a Server on a socket in a fresh directory until the test ends.
func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st := storetest.Open(t, filepath.Join(dir, "weft.db"), store.Options{}) // closed after Serve returned
	rec := &recorder{}
	srv := &Server{Store: st, Notifier: rec, Online: func(id wire.NodeID) bool { return id == 1 }}
	sock := SocketPath(dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, sock) }()
	c := NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	waitListening(t, sock, done)
	return &env{st: st, db: filepath.Join(dir, "weft.db"), rec: rec, c: c, sock: sock}
}

// waitListening blocks until the socket accepts a connection; Serve
// renames it into place only once it is listening, so the first
// successful dial means ready.
func waitListening(t *testing.T, sock string, done chan error) {
	t.Helper()
	for {
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// userNodes creates user and registers one node of theirs per hostname.
func (e *env) userNodes(t *testing.T, user string, hostnames ...string) []store.Node {
	t.Helper()
	if _, err := e.c.CreateUser(context.Background(), user); err != nil {
		t.Fatal(err)
	}
	var ns []store.Node
	for _, h := range hostnames {
		ns = append(ns, e.register(t, user, h))
	}
	return ns
}

func (e *env) register(t *testing.T, user, hostname string) store.Node {
	t.Helper()
	ctx := context.Background()
	k, err := e.c.CreateKey(ctx, KeyRequest{User: user})
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.st.Register(ctx, store.RegisterRequest{
		AuthKey: k.Key, MachineKey: key.NewMachine().Public(), NodeKey: key.NewNode().Public(), Hostname: hostname,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSocket(t *testing.T) {
	e := start(t)
	tstest.OwnerOnlySocket(t, e.sock)
	entries, _ := os.ReadDir(filepath.Dir(e.sock))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".ws") {
			t.Errorf("temporary directory %s left behind", en.Name())
		}
	}
	t.Run("second server refused", func(t *testing.T) {
		err := (&Server{Store: e.st}).Serve(context.Background(), e.sock)
		if err == nil || !strings.Contains(err.Error(), "already listening") {
			t.Fatalf("second Serve = %v", err)
		}
		if _, err := e.c.ListUsers(context.Background()); err != nil {
			t.Fatalf("first server broken by the second: %v", err)
		}
	})
	t.Run("stale socket replaced", func(t *testing.T) {
		dir := t.TempDir()
		sock := SocketPath(dir)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // leaves the file, as a crashed server would
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- (&Server{Store: e.st}).Serve(ctx, sock) }()
		waitListening(t, sock, done)
		if _, err := NewClient(sock).ListUsers(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket left after shutdown: %v", err)
		}
	})
	t.Run("regular file left alone", func(t *testing.T) {
		sock := SocketPath(t.TempDir())
		if err := os.WriteFile(sock, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := (&Server{Store: e.st}).Serve(context.Background(), sock)
		if err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("Serve over a regular file = %v", err)
		}
		if b, _ := os.ReadFile(sock); string(b) != "data" {
			t.Fatal("regular file was replaced")
		}
	})
	t.Run("not running", func(t *testing.T) {
		_, err := NewClient(filepath.Join(t.TempDir(), "admin.sock")).ListUsers(context.Background())
		if !errors.Is(err, ErrServerNotRunning) {
			t.Fatalf("err = %v, want ErrServerNotRunning", err)
		}
	})
}

func TestUsersAndKeys(t *testing.T) {
	ctx := context.Background()
	e := start(t)
	if u, err := e.c.CreateUser(ctx, "alice"); err != nil || u.Name != "alice" || u.ID == 0 {
		t.Fatalf("CreateUser = %+v, %v", u, err)
	}
	_, err := e.c.CreateUser(ctx, "alice")
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 409 || !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "already exists") {
		t.Errorf("message %q is not for people", err)
	}
	if _, err := e.c.CreateUser(ctx, "Bad Name"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if us, err := e.c.ListUsers(ctx); err != nil || len(us) != 1 {
		t.Fatalf("ListUsers = %v, %v", us, err)
	}

	k, err := e.c.CreateKey(ctx, KeyRequest{User: "alice", Reusable: true, Tags: []string{"tag:server"}, Expiry: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Key, k.Info.Prefix+"_") || !k.Info.Reusable || k.Info.Expiry.IsZero() || k.Info.Tags[0] != "tag:server" {
		t.Fatalf("CreateKey = %+v", k)
	}
	for _, bad := range []KeyRequest{
		{User: "alice", Expiry: "soon"},
		{User: "alice", Expiry: "-1h"},
		{User: "alice", Tags: []string{"server"}},
	} {
		if _, err := e.c.CreateKey(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateKey(%+v) = %v, want invalid", bad, err)
		}
	}
	if _, err := e.c.CreateKey(ctx, KeyRequest{User: "nobody"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key for unknown user: %v", err)
	}
	ks, err := e.c.ListKeys(ctx, "alice")
	if err != nil || len(ks) != 1 || ks[0].Prefix != k.Info.Prefix {
		t.Fatalf("ListKeys = %+v, %v", ks, err)
	}
	if err := e.c.ExpireKey(ctx, k.Info.Prefix); err != nil {
		t.Fatal(err)
	}
	ks, _ = e.c.ListKeys(ctx, "")
	if ks[0].Usable(ks[0].Expiry.Add(1)) {
		t.Fatal("expired key still usable")
	}
	if _, err := e.c.ListKeys(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ListKeys(nobody) = %v", err)
	}

	n := e.register(t, "alice", "busan")
	if err := e.c.DeleteUser(ctx, "alice"); !errors.Is(err, store.ErrUserInUse) {
		t.Fatalf("DeleteUser with nodes = %v", err)
	}
	if err := e.c.DeleteNode(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
}

func TestNodes(t *testing.T) {
	ctx := context.Background()
	e := start(t)
	nodes := e.userNodes(t, "alice", "busan", "mac")
	busan, mac := nodes[0], nodes[1]

	ns, err := e.c.ListNodes(ctx)
	if err != nil || len(ns) != 2 {
		t.Fatalf("ListNodes = %v, %v", ns, err)
	}
	if ns[0].Online == nil || !*ns[0].Online || *ns[1].Online {
		t.Fatalf("online flags wrong: %v %v", ns[0].Online, ns[1].Online)
	}
	for _, ref := range []string{"busan", "1", "id:1"} {
		n, err := e.c.GetNode(ctx, ref)
		if err != nil || n.ID != busan.ID || n.IPv4 != busan.IPv4 {
			t.Fatalf("GetNode(%q) = %+v, %v", ref, n, err)
		}
	}
	if _, err := e.c.GetNode(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetNode(nope) = %v", err)
	}

	if _, err := e.c.GetNode(ctx, "id:99"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetNode(id:99) = %v", err)
	}
	// An all-digit name would shadow a node ID: `nodes delete 1` could
	// delete the wrong node.
	if _, err := e.c.RenameNode(ctx, "mac", "1"); err == nil || !strings.Contains(err.Error(), "all digits") {
		t.Fatalf("rename mac to 1 = %v, want a refusal", err)
	}
	if n, err := e.c.GetNode(ctx, "1"); err != nil || n.ID != busan.ID {
		t.Fatalf("GetNode(1) after the refused rename = %+v, %v", n, err)
	}
	n, err := e.c.RenameNode(ctx, "mac", "macbook")
	if err != nil || n.Name != "macbook" {
		t.Fatalf("rename = %+v, %v", n, err)
	}
	if _, err := e.c.RenameNode(ctx, "macbook", "busan"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("rename onto busan = %v", err)
	}
	if n, err = e.c.ExpireNode(ctx, "busan"); err != nil || n.KeyExpiry.IsZero() || !n.KeyExpired(n.KeyExpiry) {
		t.Fatalf("expire = %+v, %v", n.KeyExpiry, err)
	}
	changed, removed := e.rec.take()
	if !slices.Equal(changed, []wire.NodeID{mac.ID, busan.ID}) || removed != nil {
		t.Fatalf("notified changed %v removed %v", changed, removed)
	}
	if err := e.c.DeleteNode(ctx, "macbook"); err != nil {
		t.Fatal(err)
	}
	if _, removed := e.rec.take(); !slices.Equal(removed, []wire.NodeID{mac.ID}) {
		t.Fatalf("removed %v", removed)
	}
	if err := e.c.DeleteNode(ctx, "macbook"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete = %v", err)
	}
}

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	e := start(t)
	n := e.userNodes(t, "alice", "busan")[0]
	lan := netip.MustParsePrefix("192.168.1.0/24")
	if _, err := e.st.SetAdvertisedRoutes(ctx, n.ID, append([]netip.Prefix{lan}, tailnet.ExitRoutes()...)); err != nil {
		t.Fatal(err)
	}
	got, err := e.c.ApproveRoutes(ctx, "busan", tailnet.ExitRoutes())
	if err != nil || len(got.EnabledRoutes()) != 2 {
		t.Fatalf("approve exit = %v, %v", got.EnabledRoutes(), err)
	}
	if _, err := e.c.ApproveRoutes(ctx, "busan", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("approve unadvertised = %v", err)
	}
	if _, err := e.c.ApproveRoutes(ctx, "busan", nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("approve nothing = %v", err)
	}
	if got, err = e.c.RejectRoutes(ctx, "busan", tailnet.ExitRoutes()[1:]); err != nil || len(got.EnabledRoutes()) != 1 {
		t.Fatalf("reject ::/0 = %v, %v", got.EnabledRoutes(), err)
	}
	rs, err := e.c.ListRoutes(ctx)
	if err != nil || len(rs) != 3 || !rs[0].Enabled() || rs[0].NodeName != "busan" {
		t.Fatalf("ListRoutes = %+v, %v", rs, err)
	}
	if changed, _ := e.rec.take(); len(changed) != 2 || changed[0] != n.ID {
		t.Fatalf("notified %v", changed)
	}
}

func TestParseRouteArg(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    string
		wantErr string
	}{
		{"exit", "[0.0.0.0/0 ::/0]", ""},
		{"EXIT", "[0.0.0.0/0 ::/0]", ""},
		{"192.168.1.0/24", "[192.168.1.0/24]", ""},
		{"192.168.1.0/24, fd00:1::/64,192.168.1.0/24", "[192.168.1.0/24 fd00:1::/64]", ""},
		{"0.0.0.0/0", "[0.0.0.0/0]", ""},
		{"192.168.1.1/24", "", "did you mean 192.168.1.0/24"},
		{"192.168.1.1", "", "is an address"},
		{"lan", "", "not a CIDR prefix"},
		{"100.64.1.0/24", "", "overlaps the tailnet"},
		{"", "", "no route given"},
		{" , ", "", "no route given"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRouteArg(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("ParseRouteArg(%q) = %v, %v; want error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || fmtPrefixes(got) != tt.want {
				t.Fatalf("ParseRouteArg(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func fmtPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

func FuzzParseRouteArg(f *testing.F) {
	for _, s := range []string{"exit", "10.0.0.0/8,::/0", "1.2.3.4", "fe80::1%eth0/64", ",", "::ffff:1.2.3.0/120"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseRouteArg(s)
		if err != nil {
			return
		}
		if len(ps) == 0 {
			t.Fatal("no prefixes and no error")
		}
		for _, p := range ps {
			if store.ValidatePrefix(p) != nil {
				t.Fatalf("ParseRouteArg(%q) returned invalid %v", s, p)
			}
		}
	})
}

func TestShutdown(t *testing.T) {
	dir := t.TempDir()
	srv := &Server{Store: storetest.Open(t, filepath.Join(dir, "weft.db"), store.Options{})}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Serve = %v", err)
	}
	sock := SocketPath(dir)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), sock) }()
	waitListening(t, sock, done)
	c := NewClient(sock)
	defer c.Close()
	if _, err := c.ListUsers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
	if err := srv.Serve(context.Background(), sock); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Serve = %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after Shutdown and a refused Serve: %v", err)
	}
	if _, err := c.ListUsers(context.Background()); !errors.Is(err, ErrServerNotRunning) {
		t.Fatalf("after Shutdown: %v", err)
	}
}

package controlclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/control"
	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/localapi"
	"weft/internal/nodestate"
	"weft/internal/store"
	"weft/internal/wire"
)

// env is a control server whose handler can be swapped, to restart the
// server or replace it with one holding another key at the same URL.
type env struct {
	t       *testing.T
	st      store.Store
	srv     *control.Server
	handler atomic.Pointer[http.Handler]
	url     string
	key     key.MachinePrivate
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, key: key.NewMachine()}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	}))
	e.url = hs.URL
	e.start(e.key)
	t.Cleanup(func() {
		hs.Close()
		e.srv.Close()
		st.Close()
	})
	return e
}

// start (re)starts the control server with k.
func (e *env) start(k key.MachinePrivate) {
	if e.srv != nil {
		e.srv.Close()
	}
	srv, err := control.New(context.Background(), control.Config{Store: e.st, Key: k, BatchWindow: 5 * time.Millisecond, RegisterRate: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	h := srv.Handler()
	e.handler.Store(&h)
}

func (e *env) authKey(reusable bool) string {
	s, _, err := e.st.CreateAuthKey(context.Background(), store.AuthKeyRequest{User: "alice", Reusable: reusable})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) client(name string, pin key.MachinePublic, onMap func(*controlclient.NetMap)) *controlclient.Client {
	c, err := controlclient.New(controlclient.Options{
		ServerURL:  e.url,
		MachineKey: key.NewMachine(),
		NodeKey:    key.NewNode(),
		DiscoKey:   key.NewDisco().Public(),
		Hostinfo:   &wire.Hostinfo{Hostname: name, OS: "linux"},
		ServerKey:  pin,
		OnMap:      onMap,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPinning(t *testing.T) {
	e := newEnv(t)
	var pinned key.MachinePublic
	c, _ := controlclient.New(controlclient.Options{
		ServerURL: e.url, MachineKey: key.NewMachine(), NodeKey: key.NewNode(),
		OnPin: func(k key.MachinePublic) error { pinned = k; return nil },
	})
	if _, err := c.Register(context.Background(), e.authKey(false), key.NodePublic{}); err != nil {
		t.Fatal(err)
	}
	if pinned != e.key.Public() {
		t.Fatalf("pinned %v, want the server's key", pinned)
	}

	// The server is replaced by one with another key at the same URL.
	e.start(key.NewMachine())
	c2 := e.client("x", pinned, nil)
	_, err := c2.Register(context.Background(), e.authKey(false), key.NodePublic{})
	if !errors.Is(err, controlclient.ErrServerKeyChanged) {
		t.Fatalf("err = %v, want ErrServerKeyChanged", err)
	}
	if !strings.Contains(err.Error(), "weft logout") {
		t.Errorf("error %q does not say what to do", err)
	}
}

func TestUnreachable(t *testing.T) {
	c, _ := controlclient.New(controlclient.Options{ServerURL: "http://127.0.0.1:1", MachineKey: key.NewMachine(), NodeKey: key.NewNode()})
	_, err := c.Register(context.Background(), "k", key.NodePublic{})
	if !errors.Is(err, controlclient.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

func TestRegisterRefusalIsPlainWords(t *testing.T) {
	e := newEnv(t)
	_, err := e.client("x", key.MachinePublic{}, nil).Register(context.Background(), "nope", key.NodePublic{})
	var em *wire.ErrorMessage
	if !errors.As(err, &em) || em.Code != wire.CodeInvalidKey || !strings.Contains(em.Message, "invalid auth key") {
		t.Fatalf("err = %#v", err)
	}
}

// TestStreamReconnectsAndResumes runs two clients, restarts the server
// under them, and checks that they come back and see each other, and that
// endpoint updates flow.
func TestStreamReconnectsAndResumes(t *testing.T) {
	e := newEnv(t)
	k := e.authKey(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []*controlclient.Client
	runs := make(chan error, 2)
	for _, name := range []string{"a", "b"} {
		c := e.client(name, key.MachinePublic{}, nil)
		if _, err := c.Register(ctx, k, key.NodePublic{}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		go func() { runs <- c.Run(ctx) }()
	}
	seesOnline := func(c *controlclient.Client, name string) bool {
		nm := c.NetMap()
		if nm == nil {
			return false
		}
		for _, p := range nm.Peers {
			if p.Name == name && p.Online {
				return true
			}
		}
		return false
	}
	waitFor(t, "a sees b", func() bool { return seesOnline(clients[0], "b") })
	waitFor(t, "b sees a", func() bool { return seesOnline(clients[1], "a") })

	ep := netip.MustParseAddrPort("192.0.2.1:41641")
	clients[0].SetEndpoints([]netip.AddrPort{ep}, 1)
	waitFor(t, "b sees a's endpoint", func() bool {
		for _, p := range clients[1].NetMap().Peers {
			if p.Name == "a" && len(p.Endpoints) == 1 && p.Endpoints[0] == ep && p.HomeRegion == 1 {
				return true
			}
		}
		return false
	})

	e.start(e.key) // a server restart drops every stream
	waitFor(t, "a disconnected", func() bool { ok, _ := clients[0].Connected(); return !ok })
	waitFor(t, "a reconnected", func() bool { ok, _ := clients[0].Connected(); return ok })
	waitFor(t, "a sees b again", func() bool { return seesOnline(clients[0], "b") })
	// The endpoint set before the restart is re-sent with the new stream.
	waitFor(t, "b sees a's endpoint again", func() bool {
		for _, p := range clients[1].NetMap().Peers {
			if p.Name == "a" && len(p.Endpoints) == 1 {
				return true
			}
		}
		return false
	})
	cancel()
	for range clients {
		if err := <-runs; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	}
}

func TestDaemonLocalAPIRoundTrip(t *testing.T) {
	e := newEnv(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	st, err := nodestate.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := controlclient.NewDaemon(controlclient.DaemonConfig{State: st})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sock := filepath.Join(t.TempDir(), "weft.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go localapi.Serve(ctx, ln, localapi.Handler(d, nil))
	fi, _ := os.Stat(sock)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}

	lc := &localapi.Client{Socket: sock}
	if s, err := lc.Status(ctx); err != nil || s.BackendState != localapi.StateNeedsLogin {
		t.Fatalf("status before up: %+v %v", s, err)
	}
	if _, err := lc.Up(ctx, localapi.UpRequest{ServerURL: e.url, AuthKey: "wrong", Hostname: "pc"}); err == nil || !strings.Contains(err.Error(), "invalid auth key") {
		t.Fatalf("up with wrong key: %v", err)
	}
	s, err := lc.Up(ctx, localapi.UpRequest{ServerURL: e.url, AuthKey: e.authKey(false), Hostname: "pc"})
	if err != nil {
		t.Fatal(err)
	}
	if s.BackendState != localapi.StateRunning || s.Self == nil || s.Self.Name != "pc" {
		t.Fatalf("status after up: %+v", s)
	}
	prefs, _ := st.LoadPrefs()
	if prefs.ServerKey != e.key.Public() || !prefs.WantUp || !prefs.Registered {
		t.Errorf("prefs after up: %+v", prefs)
	}

	// A refused up, with a bad key or to a server that is not there,
	// leaves the running node as it was.
	for _, bad := range []localapi.UpRequest{{AuthKey: "wrong"}, {ServerURL: "http://127.0.0.1:1", AuthKey: "k"}} {
		if _, err := lc.Up(ctx, bad); err == nil {
			t.Fatalf("up %+v succeeded", bad)
		}
		if s, _ := lc.Status(ctx); s.BackendState != localapi.StateRunning || s.ServerURL != e.url {
			t.Fatalf("after a refused up %+v: %+v", bad, s)
		}
		if p, _ := st.LoadPrefs(); !reflect.DeepEqual(p, prefs) {
			t.Fatalf("a refused up changed the saved prefs: %+v", p)
		}
	}

	// A second daemon on the same state dir (a restart) comes back up
	// by itself, without a key.
	d.Close()
	d2, err := controlclient.NewDaemon(controlclient.DaemonConfig{State: st})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	d2.Start()
	waitFor(t, "restarted daemon running", func() bool {
		s, _ := d2.Status(ctx)
		return s.BackendState == localapi.StateRunning
	})

	if err := d2.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := d2.Status(ctx); s.BackendState != localapi.StateStopped {
		t.Errorf("after down: %s", s.BackendState)
	}
	if err := d2.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := st.LoadPrefs(); !reflect.DeepEqual(p, nodestate.Prefs{}) {
		t.Errorf("prefs after logout: %+v", p)
	}
}

// newDaemon is a daemon without a data plane on a fresh state dir; it is
// closed at the end of the test.
func newDaemon(t *testing.T) (*controlclient.Daemon, *nodestate.Dir) {
	t.Helper()
	st, err := nodestate.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := controlclient.NewDaemon(controlclient.DaemonConfig{State: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, st
}

// TestDaemonRotateKey: `weft up --rotate-key` gives a running node a new
// WireGuard key without a pre-auth key; the server keeps its ID, name and
// addresses, and the node runs on under the new key.
func TestDaemonRotateKey(t *testing.T) {
	e := newEnv(t)
	d, st := newDaemon(t)
	ctx := context.Background()
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.url, AuthKey: e.authKey(false), Hostname: "busan"}); err != nil {
		t.Fatal(err)
	}
	mk, err := st.MachineKey()
	if err != nil {
		t.Fatal(err)
	}
	before, err := e.st.GetNodeByMachineKey(ctx, mk.Public())
	if err != nil {
		t.Fatal(err)
	}
	p0, _ := st.LoadPrefs()

	s, err := d.Up(ctx, localapi.UpRequest{RotateKey: true})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if s.BackendState != localapi.StateRunning {
		t.Errorf("after rotation: %s", s.BackendState)
	}
	p1, _ := st.LoadPrefs()
	if p1.NodeKey.Public() == p0.NodeKey.Public() {
		t.Fatal("the saved node key did not change")
	}
	after, err := e.st.GetNodeByMachineKey(ctx, mk.Public())
	if err != nil {
		t.Fatal(err)
	}
	if after.NodeKey != p1.NodeKey.Public() {
		t.Errorf("server has node key %v, want the node's new %v", after.NodeKey.ShortString(), p1.NodeKey.Public().ShortString())
	}
	if after.ID != before.ID || after.Name != before.Name || after.IPv4 != before.IPv4 || after.IPv6 != before.IPv6 {
		t.Errorf("rotation changed the node: before %d %s %v %v, after %d %s %v %v",
			before.ID, before.Name, before.IPv4, before.IPv6, after.ID, after.Name, after.IPv4, after.IPv6)
	}
	waitFor(t, "the node connected under its new key", func() bool {
		s, _ := d.Status(ctx)
		return s.BackendState == localapi.StateRunning && e.srv.Online(after.ID)
	})
}

// TestDaemonLogout: weft logout tells the server, which expires the node's
// key (an ephemeral node is deleted); if the server cannot be reached the
// node still forgets its registration and says the server was not told.
func TestDaemonLogout(t *testing.T) {
	tests := []struct {
		name      string
		ephemeral bool
		serverUp  bool
	}{
		{"expires the key", false, true},
		{"deletes an ephemeral node", true, true},
		{"server unreachable", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			d, st := newDaemon(t)
			ctx := context.Background()
			authKey, _, err := e.st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Ephemeral: tt.ephemeral})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.url, AuthKey: authKey, Hostname: "pc"}); err != nil {
				t.Fatal(err)
			}
			mk, err := st.MachineKey()
			if err != nil {
				t.Fatal(err)
			}
			if !tt.serverUp {
				h := http.Handler(http.NotFoundHandler())
				e.handler.Store(&h)
			}
			err = d.Logout(ctx)
			if p, _ := st.LoadPrefs(); !reflect.DeepEqual(p, nodestate.Prefs{}) {
				t.Errorf("prefs after logout: %+v", p)
			}
			n, gerr := e.st.GetNodeByMachineKey(ctx, mk.Public())
			switch {
			case !tt.serverUp:
				if err == nil || !strings.Contains(err.Error(), "could not be told") {
					t.Errorf("logout with the server gone: err = %v", err)
				}
				if gerr != nil || n.KeyExpired(time.Now()) {
					t.Errorf("the server's node changed although it was never told: %+v, %v", n, gerr)
				}
			case tt.ephemeral:
				if err != nil {
					t.Fatal(err)
				}
				if !errors.Is(gerr, store.ErrNotFound) {
					t.Errorf("ephemeral node after logout: %+v, %v; want it deleted", n, gerr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if gerr != nil || !n.KeyExpired(time.Now()) {
					t.Errorf("node after logout: expiry %v, %v; want its key expired", n.KeyExpiry, gerr)
				}
			}
		})
	}
}

package node_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/localapi/localapitest"
	"weft/internal/node"
	"weft/internal/nodestate"
	"weft/internal/store"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
)

func TestDaemonLocalAPIRoundTrip(t *testing.T) {
	e := controltest.New(t)
	d, st := newDaemon(t)
	sock, stop := localapitest.Serve(t, d)
	defer stop()
	ctx := context.Background()
	fi, _ := os.Stat(sock)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}

	lc := &localapi.Client{Socket: sock}
	if s, err := lc.Status(ctx); err != nil || s.BackendState != localapi.StateNeedsLogin {
		t.Fatalf("status before up: %+v %v", s, err)
	}
	if _, err := lc.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: "wrong", Hostname: "pc"}); err == nil || !strings.Contains(err.Error(), "invalid auth key") {
		t.Fatalf("up with wrong key: %v", err)
	}
	s, err := lc.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: e.AuthKey(false), Hostname: "pc"})
	if err != nil {
		t.Fatal(err)
	}
	if s.BackendState != localapi.StateRunning || s.Self == nil || s.Self.Name != "pc" {
		t.Fatalf("status after up: %+v", s)
	}
	prefs, _ := st.LoadPrefs()
	if prefs.ServerKey != e.Key.Public() || !prefs.WantUp || !prefs.Registered {
		t.Errorf("prefs after up: %+v", prefs)
	}

	// A refused up, with a bad key or to a server that is not there,
	// leaves the running node as it was.
	for _, bad := range []localapi.UpRequest{{AuthKey: "wrong"}, {ServerURL: "http://127.0.0.1:1", AuthKey: "k"}} {
		if _, err := lc.Up(ctx, bad); err == nil {
			t.Fatalf("up %+v succeeded", bad)
		}
		if s, _ := lc.Status(ctx); s.BackendState != localapi.StateRunning || s.ServerURL != e.URL {
			t.Fatalf("after a refused up %+v: %+v", bad, s)
		}
		if p, _ := st.LoadPrefs(); !reflect.DeepEqual(p, prefs) {
			t.Fatalf("a refused up changed the saved prefs: %+v", p)
		}
	}

	// A second daemon on the same state dir (a restart) comes back up
	// by itself, without a key.
	d.Close()
	d2, err := node.NewDaemon(node.DaemonConfig{State: st})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	d2.Start()
	tstest.Eventually(t, "restarted daemon running", func() bool {
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
func newDaemon(t *testing.T) (*node.Daemon, *nodestate.Dir) {
	t.Helper()
	return newDaemonWith(t, node.DaemonConfig{})
}

// newDaemonWith is a daemon made with cfg on a fresh state dir; it is
// closed at the end of the test.
func newDaemonWith(t *testing.T, cfg node.DaemonConfig) (*node.Daemon, *nodestate.Dir) {
	t.Helper()
	st, err := nodestate.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.State = st
	d, err := node.NewDaemon(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, st
}

// fastRetry is the tests' DaemonConfig.Tune: the control client retries
// within 200 ms, so a test that breaks a connection need not wait.
func fastRetry(o *controlclient.Options) {
	o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
}

// dataPlaneDaemon is a daemon whose data plane is always eng; starts
// (when not nil) counts how many times one was started.
func dataPlaneDaemon(t *testing.T, eng node.Engine, starts *atomic.Int32) (*node.Daemon, *nodestate.Dir) {
	t.Helper()
	return newDaemonWith(t, node.DaemonConfig{Tune: fastRetry,
		NewEngine: func(node.EngineParams) (node.Engine, error) {
			if starts != nil {
				starts.Add(1)
			}
			return eng, nil
		}})
}

// engineDaemon is a daemon whose data plane is a recEngine.
func engineDaemon(t *testing.T) (*node.Daemon, *recEngine) {
	t.Helper()
	eng := &recEngine{}
	d, _ := dataPlaneDaemon(t, eng, nil)
	return d, eng
}

// TestDaemonRotateKey: `weft up --rotate-key` gives a running node a new
// WireGuard key without a pre-auth key; the server keeps its ID, name and
// addresses, and the node runs on under the new key.
func TestDaemonRotateKey(t *testing.T) {
	e := controltest.New(t)
	d, st := newDaemon(t)
	ctx := context.Background()
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: e.AuthKey(false), Hostname: "busan"}); err != nil {
		t.Fatal(err)
	}
	mk, err := st.MachineKey()
	if err != nil {
		t.Fatal(err)
	}
	before, err := e.Store.GetNodeByMachineKey(ctx, mk.Public())
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
	after, err := e.Store.GetNodeByMachineKey(ctx, mk.Public())
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
	tstest.Eventually(t, "the node connected under its new key", func() bool {
		s, _ := d.Status(ctx)
		return s.BackendState == localapi.StateRunning && e.Server.Online(after.ID)
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
			e := controltest.New(t)
			d, st := newDaemon(t)
			ctx := context.Background()
			authKey, _, err := e.Store.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Ephemeral: tt.ephemeral})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: authKey, Hostname: "pc"}); err != nil {
				t.Fatal(err)
			}
			mk, err := st.MachineKey()
			if err != nil {
				t.Fatal(err)
			}
			if !tt.serverUp {
				e.SetHandler(http.NotFoundHandler())
			}
			err = d.Logout(ctx)
			if p, _ := st.LoadPrefs(); !reflect.DeepEqual(p, nodestate.Prefs{}) {
				t.Errorf("prefs after logout: %+v", p)
			}
			n, gerr := e.Store.GetNodeByMachineKey(ctx, mk.Public())
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

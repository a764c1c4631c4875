package nodelogin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tstest"
	"weft/internal/tstest/storetest"
)

// newStore opens a fresh SQLite store on clk, with the user alice.
func newStore(t testing.TB, clk *tstest.Clock) store.Store {
	t.Helper()
	var now func() time.Time
	if clk != nil {
		now = clk.Now
	}
	return storetest.Open(t, "", store.Options{Now: now}, "alice")
}

func newManager(st store.Store, clk *tstest.Clock) *Manager {
	m := New(st)
	m.Now = clk.Now
	return m
}

// register joins a node with the grant's key, as weft up does.
func register(t *testing.T, st store.Store, g Grant) store.Node {
	t.Helper()
	n, err := st.Register(context.Background(), store.RegisterRequest{AuthKey: g.AuthKey,
		MachineKey: key.NewMachine().Public(), NodeKey: key.NewNode().Public(), Hostname: "jeju"})
	if err != nil {
		t.Fatalf("registering with the grant: %v", err)
	}
	return n
}

func TestManager(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		run  func(t *testing.T, st store.Store, clk *tstest.Clock, m *Manager)
	}{
		{"approve then wait gets the grant once", func(t *testing.T, st store.Store, _ *tstest.Clock, m *Manager) {
			l, poll, err := m.Start(ctx, "jeju", "192.0.2.1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Approve(ctx, l.Code, "alice"); err != nil {
				t.Fatal(err)
			}
			g, err := m.Wait(ctx, poll)
			if err != nil || g.AuthKey == "" || g.User != "alice" {
				t.Fatalf("wait: %+v %v", g, err)
			}
			if n := register(t, st, g); n.User != "alice" {
				t.Fatalf("the node joined as %q", n.User)
			}
			if _, err := m.Wait(ctx, poll); !errors.Is(err, ErrUnknown) {
				t.Fatalf("second wait: %v", err)
			}
		}},
		{"single use", func(t *testing.T, _ store.Store, _ *tstest.Clock, m *Manager) {
			l, _, _ := m.Start(ctx, "jeju", "192.0.2.1")
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for range 8 {
				wg.Go(func() {
					if _, err := m.Approve(ctx, l.Code, "alice"); err == nil {
						mu.Lock()
						wins++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("%d approvals of one code succeeded", wins)
			}
			if _, err := m.Lookup(ctx, l.Code); !errors.Is(err, ErrUnknown) {
				t.Fatalf("lookup after approval: %v", err)
			}
		}},
		{"expires", func(t *testing.T, _ store.Store, clk *tstest.Clock, m *Manager) {
			l, poll, _ := m.Start(ctx, "jeju", "192.0.2.1")
			clk.Advance(Lifetime)
			if _, err := m.Approve(ctx, l.Code, "alice"); !errors.Is(err, ErrUnknown) {
				t.Fatalf("approve after expiry: %v", err)
			}
			if _, err := m.Wait(ctx, poll); !errors.Is(err, ErrUnknown) {
				t.Fatalf("wait after expiry: %v", err)
			}
			if ls, err := m.Pending(ctx); err != nil || len(ls) != 0 {
				t.Fatalf("expired login still pending: %v %v", ls, err)
			}
		}},
		{"an unknown user leaves it pending", func(t *testing.T, _ store.Store, _ *tstest.Clock, m *Manager) {
			l, _, _ := m.Start(ctx, "jeju", "192.0.2.1")
			if _, err := m.Approve(ctx, l.Code, "nobody"); err == nil || errors.Is(err, ErrUnknown) {
				t.Fatalf("approval as an unknown user: %v; want the store's error", err)
			}
			if _, err := m.Approve(ctx, l.Code, "alice"); err != nil {
				t.Fatalf("approval after a failed one: %v", err)
			}
		}},
		{"bounded per address", func(t *testing.T, _ store.Store, _ *tstest.Clock, m *Manager) {
			for range MaxPendingPerAddr {
				if _, _, err := m.Start(ctx, "x", "192.0.2.9"); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := m.Start(ctx, "x", "192.0.2.9"); !errors.Is(err, ErrTooMany) {
				t.Fatalf("login %d from one address: %v", MaxPendingPerAddr+1, err)
			}
			if _, _, err := m.Start(ctx, "x", "192.0.2.10"); err != nil {
				t.Fatalf("another address: %v", err)
			}
		}},
		{"wrong poll token", func(t *testing.T, _ store.Store, _ *tstest.Clock, m *Manager) {
			l, _, _ := m.Start(ctx, "jeju", "192.0.2.1")
			if _, err := m.Wait(ctx, l.Code); !errors.Is(err, ErrUnknown) {
				t.Fatalf("the code is not the poll token: %v", err)
			}
		}},
		{"approved at another server, woken by its announcement", func(t *testing.T, st store.Store, clk *tstest.Clock, m *Manager) {
			// b is a second server on the same database; its
			// announcement reaches m as the change feed would.
			b := newManager(st, clk)
			b.Announce = m.Wake
			l, poll, err := m.Start(ctx, "jeju", "192.0.2.1")
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				g   Grant
				err error
			}
			done := make(chan result, 1)
			go func() {
				g, err := m.Wait(ctx, poll)
				done <- result{g, err}
			}()
			for m.Waiting() == 0 {
				time.Sleep(time.Millisecond)
			}
			ls, err := b.Pending(ctx)
			if err != nil || len(ls) != 1 || ls[0].Code != l.Code {
				t.Fatalf("the other server's pending list: %+v %v", ls, err)
			}
			if _, err := b.Approve(ctx, l.Code, "alice"); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil || r.g.User != "alice" {
				t.Fatalf("wait at the first server: %+v %v", r.g, r.err)
			}
			register(t, st, r.g)
		}},
		{"a wait ends with its context", func(t *testing.T, _ store.Store, _ *tstest.Clock, m *Manager) {
			_, poll, _ := m.Start(ctx, "jeju", "192.0.2.1")
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := m.Wait(cctx, poll); !errors.Is(err, context.Canceled) {
				t.Fatalf("wait with a cancelled context: %v", err)
			}
			if m.Waiting() != 0 {
				t.Fatal("a finished wait is still registered")
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := tstest.NewClock(time.Now())
			st := newStore(t, clk)
			c.run(t, st, clk, newManager(st, clk))
		})
	}
}

// TestHandlerBadInput: the public endpoints refuse bad bodies with 4xx
// and start nothing.
func TestHandlerBadInput(t *testing.T) {
	m := New(newStore(t, nil))
	mux := http.NewServeMux()
	(&Handler{Logins: m, BaseURL: "http://x"}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		path, body string
		status     int
	}{
		{StartPath, `{"hostname":5}`, 400},
		{StartPath, `{"hostname":"` + strings.Repeat("a", 300) + `"}`, 400},
		{StartPath, `{"host":"x"}`, 400},
		{StartPath, strings.Repeat(" ", 5000) + `{}`, 400},
		{WaitPath, `{"poll":"nosuch"}`, 410},
	} {
		resp, err := http.Post(srv.URL+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %.40q: %d, want %d", c.path, c.body, resp.StatusCode, c.status)
		}
	}
	if ls, _ := m.Pending(context.Background()); len(ls) != 0 {
		t.Fatal("bad input started a login")
	}
	resp, _ := http.Get(srv.URL + PagePath + "nosuch")
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("unknown code page: %d", resp.StatusCode)
	}
}

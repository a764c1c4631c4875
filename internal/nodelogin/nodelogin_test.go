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

	"weft/internal/tstest"
)

func mintOK(user string, _ time.Time) (string, error) { return "wk-" + user, nil }

func TestManager(t *testing.T) {
	clk := tstest.NewClock(time.Now())
	for _, c := range []struct {
		name string
		run  func(t *testing.T, m *Manager)
	}{
		{"approve then wait gets the grant once", func(t *testing.T, m *Manager) {
			l, poll, err := m.Start("jeju", "192.0.2.1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Approve(l.Code, "alice", mintOK); err != nil {
				t.Fatal(err)
			}
			g, err := m.Wait(context.Background(), poll)
			if err != nil || g.AuthKey != "wk-alice" || g.User != "alice" {
				t.Fatalf("wait: %+v %v", g, err)
			}
			if _, err := m.Wait(context.Background(), poll); !errors.Is(err, ErrUnknown) {
				t.Fatalf("second wait: %v", err)
			}
		}},
		{"single use", func(t *testing.T, m *Manager) {
			l, _, _ := m.Start("jeju", "192.0.2.1")
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := m.Approve(l.Code, "alice", mintOK); err == nil {
						mu.Lock()
						wins++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("%d approvals of one code succeeded", wins)
			}
			if _, err := m.Lookup(l.Code); !errors.Is(err, ErrUnknown) {
				t.Fatalf("lookup after approval: %v", err)
			}
		}},
		{"expires", func(t *testing.T, m *Manager) {
			l, poll, _ := m.Start("jeju", "192.0.2.1")
			clk.Advance(Lifetime)
			if _, err := m.Approve(l.Code, "alice", mintOK); !errors.Is(err, ErrUnknown) {
				t.Fatalf("approve after expiry: %v", err)
			}
			if _, err := m.Wait(context.Background(), poll); !errors.Is(err, ErrUnknown) {
				t.Fatalf("wait after expiry: %v", err)
			}
			if len(m.Pending()) != 0 {
				t.Fatal("expired login still pending")
			}
		}},
		{"failed mint leaves it pending", func(t *testing.T, m *Manager) {
			l, _, _ := m.Start("jeju", "192.0.2.1")
			if _, err := m.Approve(l.Code, "nobody", func(string, time.Time) (string, error) { return "", errors.New("no user") }); err == nil {
				t.Fatal("approval with a failing mint succeeded")
			}
			if _, err := m.Approve(l.Code, "alice", mintOK); err != nil {
				t.Fatalf("approval after a failed one: %v", err)
			}
		}},
		{"bounded per address", func(t *testing.T, m *Manager) {
			for range MaxPendingPerAddr {
				if _, _, err := m.Start("x", "192.0.2.9"); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := m.Start("x", "192.0.2.9"); !errors.Is(err, ErrTooMany) {
				t.Fatalf("login %d from one address: %v", MaxPendingPerAddr+1, err)
			}
			if _, _, err := m.Start("x", "192.0.2.10"); err != nil {
				t.Fatalf("another address: %v", err)
			}
		}},
		{"wrong poll token", func(t *testing.T, m *Manager) {
			l, _, _ := m.Start("jeju", "192.0.2.1")
			if _, err := m.Wait(context.Background(), l.Code); !errors.Is(err, ErrUnknown) {
				t.Fatalf("the code is not the poll token: %v", err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, New(clk.Now)) })
	}
}

// TestHandlerBadInput: the public endpoints refuse bad bodies with 4xx
// and start nothing.
func TestHandlerBadInput(t *testing.T) {
	m := New(nil)
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
	if len(m.Pending()) != 0 {
		t.Fatal("bad input started a login")
	}
	resp, _ := http.Get(srv.URL + PagePath + "nosuch")
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("unknown code page: %d", resp.StatusCode)
	}
}

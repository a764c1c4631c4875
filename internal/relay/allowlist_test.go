package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/key"
)

// countingSource counts how often the allow list is read.
type countingSource struct {
	*keySet
	reads atomic.Int64
}

func (c *countingSource) AllowedNodeKeys(ctx context.Context) ([]key.NodePublic, error) {
	c.reads.Add(1)
	return c.keySet.AllowedNodeKeys(ctx)
}

func TestAllowListHandler(t *testing.T) {
	a := key.NewNode()
	src := &countingSource{keySet: allow(a)}
	hs := httptest.NewServer(NewAllowListHandler(src, "s3cret"))
	defer hs.Close()
	empty := httptest.NewServer(NewAllowListHandler(src, ""))
	defer empty.Close()

	tests := []struct {
		name   string
		url    string
		method string
		auth   string
		want   int
	}{
		{"right secret", hs.URL, "GET", "Bearer s3cret", http.StatusOK},
		{"wrong secret", hs.URL, "GET", "Bearer nope", http.StatusUnauthorized},
		{"no secret", hs.URL, "GET", "", http.StatusUnauthorized},
		{"not bearer", hs.URL, "GET", "s3cret", http.StatusUnauthorized},
		{"POST", hs.URL, "POST", "Bearer s3cret", http.StatusMethodNotAllowed},
		{"server without a secret", empty.URL, "GET", "Bearer ", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url+AllowListPath, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %s, want %d", resp.Status, tt.want)
			}
		})
	}
}

func TestRemoteAuthorizer(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	src := &countingSource{keySet: allow(a)}
	var notModified atomic.Int64
	h := NewAllowListHandler(src, "s3cret")
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusNotModified {
			notModified.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer hs.Close()
	ctx := context.Background()

	t.Run("wrong secret refused", func(t *testing.T) {
		ra, err := NewRemoteAuthorizer(RemoteAuthorizerOptions{ServerURL: hs.URL, Secret: "wrong"})
		if err != nil {
			t.Fatal(err)
		}
		ok, err := ra.AllowNode(ctx, a.Public())
		if ok || err == nil || !strings.Contains(err.Error(), "refused the relay secret") {
			t.Fatalf("got %v %v, want an error about the secret", ok, err)
		}
	})

	ra, err := NewRemoteAuthorizer(RemoteAuthorizerOptions{ServerURL: hs.URL + "/", Secret: "s3cret", MissRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("known key allowed", func(t *testing.T) {
		if ok, err := ra.AllowNode(ctx, a.Public()); !ok || err != nil {
			t.Fatalf("got %v %v", ok, err)
		}
	})
	t.Run("unknown key refused without another poll", func(t *testing.T) {
		reads := src.reads.Load()
		if ok, err := ra.AllowNode(ctx, b.Public()); ok || err != nil {
			t.Fatalf("got %v %v", ok, err)
		}
		if src.reads.Load() != reads {
			t.Fatal("a miss polled again within MissRefresh")
		}
	})
	t.Run("new key learned on refresh", func(t *testing.T) {
		src.add(b.Public())
		if err := ra.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, _ := ra.AllowNode(ctx, b.Public()); !ok {
			t.Fatal("b not allowed after refresh")
		}
	})
	t.Run("unchanged list not re-sent", func(t *testing.T) {
		if err := ra.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if notModified.Load() != 1 {
			t.Fatalf("%d answers were 304, want 1", notModified.Load())
		}
		if ok, _ := ra.AllowNode(ctx, a.Public()); !ok {
			t.Fatal("a 304 lost the list")
		}
	})
	t.Run("miss polls when allowed", func(t *testing.T) {
		eager, _ := NewRemoteAuthorizer(RemoteAuthorizerOptions{ServerURL: hs.URL, Secret: "s3cret", MissRefresh: time.Nanosecond})
		eager.Refresh(ctx)
		c := key.NewNode()
		src.add(c.Public())
		if ok, err := eager.AllowNode(ctx, c.Public()); !ok || err != nil {
			t.Fatalf("a key added after the last poll: %v %v", ok, err)
		}
	})
	t.Run("control server down before any list", func(t *testing.T) {
		down, _ := NewRemoteAuthorizer(RemoteAuthorizerOptions{ServerURL: "http://127.0.0.1:1", Secret: "s3cret"})
		if _, err := down.AllowNode(ctx, a.Public()); err == nil {
			t.Fatal("no error without a list")
		}
	})
}

// TestRelayWithRemoteAuthorizer runs the standalone arrangement: a relay
// whose authorizer polls a control server's allow list.
func TestRelayWithRemoteAuthorizer(t *testing.T) {
	a, b, stranger := key.NewNode(), key.NewNode(), key.NewNode()
	ctrl := httptest.NewServer(NewAllowListHandler(allow(a, b), "s3cret"))
	defer ctrl.Close()
	ra, err := NewRemoteAuthorizer(RemoteAuthorizerOptions{ServerURL: ctrl.URL, Secret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ra.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	r := startSimpleRelay(t, ra)
	ca, cb := connect(t, r.url, a), connect(t, r.url, b)
	if err := ca.Send(b.Public(), []byte("via a standalone relay")); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, cb); string(p.Data) != "via a standalone relay" {
		t.Fatalf("got %q", p.Data)
	}
	c, _ := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: stranger})
	defer c.Close()
	if err := c.Connect(context.Background()); !errors.Is(err, ErrRefused) {
		t.Fatalf("stranger: %v", err)
	}
}

func TestSourceAuthorizer(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	auth := SourceAuthorizer{Source: allow(a)}
	tests := []struct {
		name string
		k    key.NodePublic
		want bool
	}{
		{"listed", a.Public(), true},
		{"not listed", b.Public(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := auth.AllowNode(context.Background(), tt.k); err != nil || got != tt.want {
				t.Fatalf("got %v %v, want %v", got, err, tt.want)
			}
		})
	}
}

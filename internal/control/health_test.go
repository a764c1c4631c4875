package control

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/wire"
)

// downStore is a store whose database can be made unreachable: while down,
// Ping and every call a registration or a stream makes fail.
type downStore struct {
	store.Store
	down atomic.Bool
}

var errDown = errors.New("dial unix /run/postgresql/.s.PGSQL.5432: connect: no such file or directory")

func (s *downStore) Ping(ctx context.Context) error {
	if s.down.Load() {
		return errDown
	}
	return nil
}

func (s *downStore) Register(ctx context.Context, req store.RegisterRequest) (store.Node, error) {
	if s.down.Load() {
		return store.Node{}, errDown
	}
	return s.Store.Register(ctx, req)
}

func (s *downStore) UpdateNodeRuntime(ctx context.Context, id wire.NodeID, fn func(*store.NodeRuntime)) (store.Node, error) {
	if s.down.Load() {
		return store.Node{}, errDown
	}
	return s.Store.UpdateNodeRuntime(ctx, id, fn)
}

func (s *downStore) SetNodeRuntimes(ctx context.Context, rts map[wire.NodeID]store.NodeRuntime) ([]wire.NodeID, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.SetNodeRuntimes(ctx, rts)
}

func (s *downStore) GetNodes(ctx context.Context, ids []wire.NodeID) ([]store.Node, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.GetNodes(ctx, ids)
}

func (s *downStore) GetNodeByMachineKey(ctx context.Context, mk key.MachinePublic) (store.Node, error) {
	if s.down.Load() {
		return store.Node{}, errDown
	}
	return s.Store.GetNodeByMachineKey(ctx, mk)
}

func healthz(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDatabaseLoss: while the database is down /healthz says so (503 with
// the reason), registrations and new streams are refused in words that
// say why, and the streams already up keep getting changes from memory;
// once it is back the server is healthy again by itself.
func TestDatabaseLoss(t *testing.T) {
	var ds *downStore
	h := newHarness(t, func(c *Config) {
		ds = &downStore{Store: c.Store}
		c.Store = ds
	})
	nodes := h.streamingNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	var va feedView
	va.await(t, a, "b online", func() bool { return va.peers[b.self.ID].Online })
	if code, body := healthz(t, h.url); code != http.StatusOK {
		t.Fatalf("/healthz with the database up: %d %s", code, body)
	}

	ds.down.Store(true)
	code, body := healthz(t, h.url)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "database unreachable") {
		t.Fatalf("/healthz with the database down: %d %q, want 503 saying the database is unreachable", code, body)
	}
	c := h.newSim("c")
	resp, err := c.register(context.Background(), h.authKey(store.AuthKeyRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Error == nil || !strings.Contains(resp.Error.Message, "cannot register nodes now") {
		t.Fatalf("registration with the database down: %+v, want a refusal saying why", resp.Error)
	}
	if err := c.stream(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.errc:
		var em *wire.ErrorMessage
		if !errors.As(err, &em) || !strings.Contains(em.Message, "cannot start map streams now") {
			t.Fatalf("a new stream with the database down ended with %v, want a refusal saying why", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a new stream with the database down was neither served nor refused")
	}
	eps := []netip.AddrPort{netip.MustParseAddrPort("203.0.113.9:41641")}
	if err := b.sendUpdate(&wire.Update{Endpoints: &eps, HomeRegion: -1}); err != nil {
		t.Fatal(err)
	}
	va.await(t, a, "b's new endpoint while the database is down", func() bool {
		p := va.peers[b.self.ID]
		return len(p.Endpoints) == 1 && p.Endpoints[0] == eps[0]
	})

	ds.down.Store(false)
	if code, body := healthz(t, h.url); code != http.StatusOK {
		t.Fatalf("/healthz after the database came back: %d %s", code, body)
	}
}

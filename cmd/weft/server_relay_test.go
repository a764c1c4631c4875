package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/control"
	"weft/internal/key"
	"weft/internal/relay"
	"weft/internal/store"
	"weft/internal/tstest/storetest"
	"weft/internal/wire"
)

// countingStore counts the node reads that reach the store.
type countingStore struct {
	store.Store
	reads atomic.Int64
}

func (s *countingStore) ListNodes(ctx context.Context) ([]store.Node, error) {
	s.reads.Add(1)
	return s.Store.ListNodes(ctx)
}

func (s *countingStore) GetNode(ctx context.Context, id wire.NodeID) (store.Node, error) {
	s.reads.Add(1)
	return s.Store.GetNode(ctx, id)
}

func (s *countingStore) GetNodeByMachineKey(ctx context.Context, mk key.MachinePublic) (store.Node, error) {
	s.reads.Add(1)
	return s.Store.GetNodeByMachineKey(ctx, mk)
}

// TestEmbeddedRelayAuthorizesFromMemory: a handshake to the embedded
// relay, even with a key nobody registered, reads nothing from the store;
// the control server keeps the set of allowed node keys in memory. A
// registered node is let in, and refused once its key expired.
func TestEmbeddedRelayAuthorizesFromMemory(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: storetest.Open(t, "", store.Options{}, "alice")}
	secret, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	member := key.NewNode()
	n, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(), NodeKey: member.Public(), Hostname: "member"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctrl, err := control.New(ctx, control.Config{Store: st, Key: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	mux, rel, err := serverMux(serverOptions{dataDir: t.TempDir(), relayRateLimit: 1 << 20}, ctrl, log)
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	if rel.RateLimit() != 1<<20 {
		t.Errorf("embedded relay rate limit %d, want the --relay-rate-limit given", rel.RateLimit())
	}
	hs := httptest.NewServer(mux)
	defer hs.Close()

	connect := func(k key.NodePrivate) error {
		c, err := relay.NewClient(relay.ClientOptions{URLs: []string{hs.URL}, NodeKey: k, MinBackoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.Connect(cctx)
	}
	st.reads.Store(0)
	if err := connect(key.NewNode()); !errors.Is(err, relay.ErrRefused) {
		t.Fatalf("unknown key: %v, want refused", err)
	}
	if got := st.reads.Load(); got != 0 {
		t.Fatalf("a handshake with an unknown key read the store %d times", got)
	}
	if err := connect(member); err != nil {
		t.Fatalf("registered node refused: %v", err)
	}
	if _, err := st.ExpireNode(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	ctrl.NodeChanged(n.ID)
	if err := connect(member); !errors.Is(err, relay.ErrRefused) {
		t.Fatalf("expired node: %v, want refused", err)
	}
}

// TestHTTPServerBounds: the HTTP server of weft server and weft relay
// bounds header reads and idle kept-alive connections, so that a client
// that connects and says nothing cannot hold a connection forever.
func TestHTTPServerBounds(t *testing.T) {
	hs := newHTTPServer(nil, slog.New(slog.DiscardHandler))
	if hs.ReadHeaderTimeout <= 0 || hs.IdleTimeout <= 0 {
		t.Fatalf("ReadHeaderTimeout %v, IdleTimeout %v: both must be set", hs.ReadHeaderTimeout, hs.IdleTimeout)
	}
}

// TestServerRelayRateLimitDefault: weft server's embedded relay limits
// each client unless told otherwise.
func TestServerRelayRateLimitDefault(t *testing.T) {
	cmd := newServerCmd(&globals{})
	f := cmd.Flags().Lookup("relay-rate-limit")
	if f == nil || f.DefValue == "0" {
		t.Fatalf("--relay-rate-limit default %v: the embedded relay must limit each client by default", f)
	}
}

// TestServerRelayAddrs: --relay-addrs puts the server's IPv6 address on
// every node of the default relay map, and is refused beside --relay-map.
func TestServerRelayAddrs(t *testing.T) {
	o := serverOptions{dataDir: t.TempDir(), serverURL: "http://203.0.113.10:8080", stunListen: []string{":3478", ":3479"},
		relayAddrs: []net.IP{net.ParseIP("2001:db8::10")}}
	_, m, err := loadServerSetup(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Regions[1].Nodes {
		if n.Host != "203.0.113.10" || n.IPv6 != netip.MustParseAddr("2001:db8::10") || n.IPv4.IsValid() {
			t.Errorf("relay node %s: host %s ipv4 %v ipv6 %v", n.Name, n.Host, n.IPv4, n.IPv6)
		}
	}
	o.relayMap = filepath.Join(t.TempDir(), "relaymap.json")
	_, _, err = loadServerSetup(o)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--relay-addrs fills in the default relay map") {
		t.Errorf("--relay-addrs with --relay-map: %v, want a usage error", err)
	}
}

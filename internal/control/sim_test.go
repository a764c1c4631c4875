package control

import (
	"context"
	"net"

	"fmt"

	"log/slog"
	"net/netip"

	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/noiseconn"
	"weft/internal/store"
	"weft/internal/wire"
)

// harness is a control server on 127.0.0.1 over a fresh store.
type harness struct {
	t   testing.TB
	st  store.Store
	srv *Server
	url string
	hs  *httptest.Server
	// dial, if set, replaces TCP for the sim nodes (see bubble_test.go).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// stopHTTP stops the HTTP side; nil means hs.Close.
	stopHTTP func()

	closeOnce sync.Once
}

func newHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	st, srv := newTestServer(t, mod)
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.ErrorLog = nil
	hs.Start()
	h := &harness{t: t, st: st, srv: srv, url: hs.URL, hs: hs}
	t.Cleanup(h.close)
	return h
}

// newTestServer makes a control server over a fresh store with user
// alice; mod, if set, adjusts its Config.
func newTestServer(t testing.TB, mod func(*Config)) (store.Store, *Server) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "weft.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Key: key.NewMachine(), BatchWindow: 5 * time.Millisecond, RegisterRate: -1}
	if os.Getenv("WEFT_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st, srv
}

// close stops the server; it may be called more than once.
func (h *harness) close() {
	h.closeOnce.Do(func() {
		if h.stopHTTP != nil {
			h.stopHTTP()
		} else {
			h.hs.Close()
		}
		h.srv.Close()
		h.st.Close()
	})
}

func (h *harness) authKey(req store.AuthKeyRequest) string {
	h.t.Helper()
	if req.User == "" {
		req.User = "alice"
	}
	secret, _, err := h.st.CreateAuthKey(context.Background(), req)
	if err != nil {
		h.t.Fatal(err)
	}
	return secret
}

// simNode is a node reduced to its control channel: it registers, holds a
// stream and hands each raw map message to the test.
type simNode struct {
	h       *harness
	machine key.MachinePrivate
	node    key.NodePrivate
	disco   key.DiscoPrivate
	name    string
	self    *wire.Node
	conn    *noiseconn.Conn
	msgs    chan *wire.MapResponse
	errc    chan error // the stream's end
	onFrame func(typ wire.MsgType, body []byte) bool
	routes  []netip.Prefix // advertised in the map request
}

func (h *harness) newSim(name string) *simNode {
	return &simNode{h: h, machine: key.NewMachine(), node: key.NewNode(), disco: key.NewDisco(), name: name}
}

// registeredNodes registers one sim node per name with one reusable key.
func (h *harness) registeredNodes(t *testing.T, names ...string) []*simNode {
	t.Helper()
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	nodes := make([]*simNode, len(names))
	for i, name := range names {
		nodes[i] = h.newSim(name)
		nodes[i].mustRegister(t, k)
	}
	return nodes
}

// streamingNodes is registeredNodes with each node's stream started; the
// streams close when the test ends.
func (h *harness) streamingNodes(t *testing.T, names ...string) []*simNode {
	t.Helper()
	nodes := h.registeredNodes(t, names...)
	for _, n := range nodes {
		if err := n.stream(context.Background()); err != nil {
			t.Fatalf("%s: stream: %v", n.name, err)
		}
		t.Cleanup(n.close)
	}
	return nodes
}

func (n *simNode) dial(ctx context.Context) (*noiseconn.Conn, error) {
	d := &noiseconn.Dialer{MachineKey: n.machine, ServerKey: n.h.srv.PublicKey(), DialContext: n.h.dial}
	return d.Dial(ctx, n.h.url)
}

// register registers and returns the server's answer.
func (n *simNode) register(ctx context.Context, authKey string) (*wire.RegisterResponse, error) {
	c, err := n.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	req := &wire.RegisterRequest{AuthKey: authKey, NodeKey: n.node.Public(), DiscoKey: n.disco.Public(),
		Hostinfo: &wire.Hostinfo{Hostname: n.name, OS: "linux"}}
	if err := wire.WriteMessage(c, wire.MsgRegisterRequest, req); err != nil {
		return nil, err
	}
	typ, body, err := wire.ReadMessage(c, wire.MaxServerMessage)
	if err != nil {
		return nil, err
	}
	if typ != wire.MsgRegisterResponse {
		return nil, fmt.Errorf("got %v", typ)
	}
	var resp wire.RegisterResponse
	if err := wire.Decode(body, &resp); err != nil {
		return nil, err
	}
	if resp.Node != nil {
		n.self = resp.Node
	}
	return &resp, nil
}

func (n *simNode) mustRegister(t testing.TB, authKey string) {
	t.Helper()
	resp, err := n.register(context.Background(), authKey)
	if err != nil {
		t.Fatalf("%s: register: %v", n.name, err)
	}
	if resp.Error != nil {
		t.Fatalf("%s: register refused: %v", n.name, resp.Error)
	}
}

// stream opens the map stream. Map messages go to n.msgs unless onFrame is
// set, in which case it sees every frame raw and returns false to stop.
func (n *simNode) stream(ctx context.Context, eps ...string) error {
	c, err := n.dial(ctx)
	if err != nil {
		return err
	}
	req := &wire.MapRequest{NodeKey: n.node.Public(), DiscoKey: n.disco.Public(), HomeRegion: 1, AdvertisedRoutes: n.routes}
	for _, e := range eps {
		req.Endpoints = append(req.Endpoints, mustAddrPort(e))
	}
	if err := wire.WriteMessage(c, wire.MsgMapRequest, req); err != nil {
		c.Close()
		return err
	}
	n.conn = c
	if n.msgs == nil {
		n.msgs = make(chan *wire.MapResponse, 1024)
	}
	errc := make(chan error, 1)
	msgs := n.msgs
	onFrame := n.onFrame
	n.errc = errc
	go func() {
		for {
			typ, body, err := wire.ReadMessage(c, wire.MaxServerMessage)
			if err != nil {
				errc <- err
				return
			}
			if onFrame != nil {
				if !onFrame(typ, body) {
					errc <- nil
					return
				}
				continue
			}
			switch typ {
			case wire.MsgMapResponse:
				var r wire.MapResponse
				if err := wire.Decode(body, &r); err != nil {
					errc <- err
					return
				}
				msgs <- &r
			case wire.MsgError:
				var em wire.ErrorMessage
				wire.Decode(body, &em)
				errc <- &em
				return
			}
		}
	}()
	return nil
}

func (n *simNode) sendUpdate(u *wire.Update) error {
	return wire.WriteMessage(n.conn, wire.MsgUpdate, u)
}

// next returns the next map message, failing the test after a timeout.
func (n *simNode) next(t testing.TB) *wire.MapResponse {
	t.Helper()
	select {
	case r := <-n.msgs:
		return r
	case err := <-n.errc:
		t.Fatalf("%s: stream ended: %v", n.name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no map message within 10s", n.name)
	}
	return nil
}

// expectQuiet checks that no map message arrives for a little while.
func (n *simNode) expectQuiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case r := <-n.msgs:
		t.Fatalf("%s: unexpected map message %+v", n.name, r)
	case <-time.After(d):
	}
}

func (n *simNode) close() {
	if n.conn != nil {
		n.conn.Close()
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

type netipAddrPort = netip.AddrPort

func newNodeKey() key.NodePrivate { return key.NewNode() }

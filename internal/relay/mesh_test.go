package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/tstest"
	"weft/internal/wire"
)

func TestMeshForwardsBetweenRelays(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	auth := allow(a, b)
	const meshKey = "region-1-mesh-secret"
	// Both relays get the same list, their own URL included, as one
	// shared config file would give them.
	hs1, url1 := reserveRelay()
	hs2, url2 := reserveRelay()
	mesh := []string{url1, url2}
	r1 := serveRelay(t, hs1, ServerOptions{Authorizer: auth, MeshKey: meshKey, MeshWith: mesh})
	r2 := serveRelay(t, hs2, ServerOptions{Authorizer: auth, MeshKey: meshKey, MeshWith: mesh})

	tstest.Eventually(t, "both relays watched by the other", func() bool {
		return r1.srv.Stats().MeshPeers == 1 && r2.srv.Stats().MeshPeers == 1
	})
	ca, cb := connect(t, r1.url, a), connect(t, r2.url, b)
	tstest.Eventually(t, "r1 to learn b is on r2", func() bool { return r1.srv.hasRoute(b.Public()) })
	tstest.Eventually(t, "r2 to learn a is on r1", func() bool { return r2.srv.hasRoute(a.Public()) })

	for i := range 3 {
		msg := fmt.Sprintf("across the mesh %d", i)
		if err := ca.Send(b.Public(), []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if p := recvPacket(t, cb); p.Src != a.Public() || string(p.Data) != msg {
			t.Fatalf("b got %q from %v", p.Data, p.Src)
		}
		if err := cb.Send(a.Public(), []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if p := recvPacket(t, ca); p.Src != b.Public() || string(p.Data) != msg {
			t.Fatalf("a got %q from %v", p.Data, p.Src)
		}
	}

	// When b leaves r2, r1 forgets the route and tells a that b is gone.
	cb.Close()
	tstest.Eventually(t, "r1 to forget b", func() bool { return !r1.srv.hasRoute(b.Public()) })
	if err := ca.Send(b.Public(), []byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	if pg, ok := recv(t, ca).(PeerGone); !ok || pg.Key != b.Public() {
		t.Fatalf("want PeerGone for b, got %#v", pg)
	}
}

func TestMeshRefusals(t *testing.T) {
	tests := []struct{ name, serverKey, clientKey, want string }{
		{"wrong mesh key", "right", "wrong", "mesh key mismatch"},
		{"relay without a mesh", "", "anything", "no mesh configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, ServerOptions{MeshKey: tt.serverKey})
			_, err := tryConnect(t, ClientOptions{URLs: []string{r.url}, NodeKey: key.NewNode(), meshKey: tt.clientKey, watchConns: true})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want refusal mentioning %q", err, tt.want)
			}
		})
	}
	t.Run("mesh URLs without a mesh key", func(t *testing.T) {
		if _, err := NewServer(ServerOptions{MeshWith: []string{"http://x"}}); err == nil {
			t.Fatal("accepted")
		}
	})
}

func (s *Server) hasRoute(k key.NodePublic) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.routes[k] != nil
}

func TestMeshAndManagerLeaveNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		a, b := key.NewNode(), key.NewNode()
		auth := allow(a, b)
		hs1, url1 := reserveRelay()
		hs2, url2 := reserveRelay()
		var relays []*Server
		for _, hs := range []*httptest.Server{hs1, hs2} {
			r := serveRelay(t, hs, ServerOptions{Authorizer: auth, MeshKey: "k", MeshWith: []string{url1, url2}})
			defer r.close()
			relays = append(relays, r.srv)
		}
		got := make(chan []byte, 1)
		m, err := NewManager(ManagerOptions{
			NodeKey: a,
			RelayMap: &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
				1: {ID: 1, Nodes: []*wire.RelayNode{relayNode(t, 1, url1)}},
			}},
			OnRecv: func(_ int, _ key.NodePublic, data []byte) { got <- data },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.SetHome(1); err != nil {
			t.Fatal(err)
		}
		cb, _ := NewClient(ClientOptions{URLs: []string{url2}, NodeKey: b})
		defer cb.Close()
		if err := cb.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		tstest.Eventually(t, "routes learned", func() bool {
			return relays[1].hasRoute(a.Public())
		})
		cb.Send(a.Public(), []byte("leak check"))
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("nothing received")
		}
	}()
	tstest.Eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

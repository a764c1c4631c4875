package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"weft/internal/key"
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

	eventually(t, "both relays watched by the other", func() bool {
		return r1.srv.Stats().MeshPeers == 1 && r2.srv.Stats().MeshPeers == 1
	})
	ca, cb := connect(t, r1.url, a), connect(t, r2.url, b)
	eventually(t, "r1 to learn b is on r2", func() bool { return r1.srv.hasRoute(b.Public()) })
	eventually(t, "r2 to learn a is on r1", func() bool { return r2.srv.hasRoute(a.Public()) })

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
	eventually(t, "r1 to forget b", func() bool { return !r1.srv.hasRoute(b.Public()) })
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
			c, err := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: key.NewNode(), meshKey: tt.clientKey, watchConns: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Connect(ctx); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
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

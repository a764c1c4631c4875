package relay

import (
	"context"
	"fmt"

	"weft/internal/key"
)

// A region may have several relays; each is configured with the others'
// URLs and a shared mesh key. Every relay keeps one meshLink per other
// relay: a Client that proves the mesh key, sends watch-conns, and so learns
// which node keys are connected there (peer-present / peer-gone). When a
// local client sends to a key connected on another relay, the server hands
// the packet to that relay's link, which sends it as forward-packet; the
// other relay delivers it only to its own clients, so a packet crosses the
// mesh at most once and cannot loop.

type meshLink struct {
	s      *Server
	url    string
	client *Client // its send queue bounds what waits for the other relay
}

func newMeshLink(s *Server, u string) (*meshLink, error) {
	c, err := NewClient(ClientOptions{
		URLs:       []string{u},
		NodeKey:    s.priv,
		Dialer:     s.opts.MeshDialer,
		TLSConfig:  s.opts.MeshTLSConfig,
		Logger:     s.log,
		meshKey:    s.opts.MeshKey,
		watchConns: true,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: mesh peer: %w", err)
	}
	return &meshLink{s: s, url: u, client: c}, nil
}

// enqueue queues a packet for the other relay; false means it was
// dropped (queue full, or the link is closing).
func (l *meshLink) enqueue(src, dst key.NodePublic, data []byte) bool {
	return l.client.forward(src, dst, data) == nil
}

// run applies the other relay's presence updates until ctx ends.
func (l *meshLink) run(ctx context.Context) {
	defer func() {
		l.client.Close()
		l.s.clearRoutes(l)
	}()
	l.client.start()
	for {
		m, err := l.client.Recv(ctx)
		if err != nil {
			return
		}
		switch m := m.(type) {
		case connState:
			// Either way the other relay's view starts afresh: on a
			// new connection it re-sends every present key.
			l.s.clearRoutes(l)
			if m.up && l.client.ServerKey() == l.s.pub {
				l.s.log.Info("relay mesh URL is this relay itself; skipping it", "url", l.url)
				return
			}
			if m.up {
				l.s.log.Info("relay mesh link up", "url", l.url)
			}
		case peerPresent:
			l.s.setRoute(m.Key, l)
		case PeerGone:
			l.s.dropRoute(m.Key, l)
		}
	}
}

func (s *Server) setRoute(k key.NodePublic, l *meshLink) {
	s.mu.Lock()
	s.routes[k] = l
	s.mu.Unlock()
}

func (s *Server) dropRoute(k key.NodePublic, l *meshLink) {
	s.mu.Lock()
	if s.routes[k] == l {
		delete(s.routes, k)
	}
	s.mu.Unlock()
}

func (s *Server) clearRoutes(l *meshLink) {
	s.mu.Lock()
	for k, r := range s.routes {
		if r == l {
			delete(s.routes, k)
		}
	}
	s.mu.Unlock()
}

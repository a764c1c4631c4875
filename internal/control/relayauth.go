package control

import (
	"context"

	"weft/internal/key"
	"weft/internal/wire"
)

// Relay authorization from memory. Relays serve tailnet members only, and
// anyone can open a relay handshake with a key of their own; so the
// answer must cost no store read. The mapper indexes its records by node
// key, kept current by every registration, rotation, expiry and deletion.

// AllowNodeKey reports whether k is the current, unexpired node key of a
// registered node, from memory. The embedded relay uses it to serve
// tailnet members only (relay.AuthorizerFunc(srv.AllowNodeKey)).
func (s *Server) AllowNodeKey(ctx context.Context, k key.NodePublic) (bool, error) {
	now := s.cfg.Now()
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	id, ok := s.m.nodeKeys[k]
	if !ok {
		return false, nil
	}
	e := s.m.nodes[id]
	if e == nil || e.n.NodeKey != k {
		delete(s.m.nodeKeys, k) // rotated away or deleted
		return false, nil
	}
	return !e.revoked && (e.n.KeyExpiry.IsZero() || now.Before(e.n.KeyExpiry)), nil
}

// AllowedNodeKeys lists the current, unexpired node keys of every node,
// from memory: the allow list standalone relays poll
// (relay.NodeKeySource).
func (s *Server) AllowedNodeKeys(ctx context.Context) ([]key.NodePublic, error) {
	now := s.cfg.Now()
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	keys := make([]key.NodePublic, 0, len(s.m.nodes))
	for _, e := range s.m.nodes {
		if !e.revoked && !e.n.NodeKey.IsZero() && (e.n.KeyExpiry.IsZero() || now.Before(e.n.KeyExpiry)) {
			keys = append(keys, e.n.NodeKey)
		}
	}
	return keys, nil
}

// indexNodeKeyLocked records that id's node key is now cur (the old one
// stays until a lookup finds it stale, or is replaced here). m.mu is held.
func (m *mapper) indexNodeKeyLocked(id wire.NodeID, old, cur key.NodePublic) {
	if old != cur && !old.IsZero() && m.nodeKeys[old] == id {
		delete(m.nodeKeys, old)
	}
	if !cur.IsZero() {
		m.nodeKeys[cur] = id
	}
}

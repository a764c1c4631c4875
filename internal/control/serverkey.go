package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"weft/internal/key"
	"weft/internal/wire"
)

// LoadOrCreateKey reads the server's long-term key from path, or makes one
// and writes it there (0600, atomically) on first start. Losing this file
// means every node refuses the server until it is re-pinned.
func LoadOrCreateKey(path string) (key.MachinePrivate, error) {
	var k key.MachinePrivate
	b, err := os.ReadFile(path)
	if err == nil {
		if err := k.UnmarshalText([]byte(strings.TrimSpace(string(b)))); err != nil {
			return k, fmt.Errorf("control: server key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return k, fmt.Errorf("control: %w", err)
	}
	k = key.NewMachine()
	text, _ := k.MarshalText()
	f, err := os.CreateTemp(filepath.Dir(path), ".server.key.tmp*")
	if err != nil {
		return k, fmt.Errorf("control: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err == nil {
		_, err = f.Write(append(text, '\n'))
		if err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link rather than rename: if two servers start at once on one
		// data dir, the second fails instead of replacing the key.
		err = os.Link(f.Name(), path)
	}
	if err != nil {
		return k, fmt.Errorf("control: writing server key: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return k, nil
}

// Online reports whether the node has a live map stream now.
func (s *Server) Online(id wire.NodeID) bool {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	e := s.m.nodes[id]
	return e != nil && e.sess != nil
}

// AllowNodeKey reports whether k is the current, unexpired node key of a
// registered node. The embedded relay uses it to serve tailnet members
// only (relay.AuthorizerFunc(srv.AllowNodeKey)).
func (s *Server) AllowNodeKey(ctx context.Context, k key.NodePublic) (bool, error) {
	now := s.cfg.Now()
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	for _, e := range s.m.nodes {
		if e.n.NodeKey == k {
			return e.n.KeyExpiry.IsZero() || now.Before(e.n.KeyExpiry), nil
		}
	}
	return false, nil
}

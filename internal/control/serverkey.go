package control

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"weft/internal/key"
	"weft/internal/wire"
)

// LoadOrCreateKey reads the server's long-term key from path, or makes one
// and writes it there (0600, atomically) on first start. Losing this file
// means every node refuses the server until it is re-pinned.
func LoadOrCreateKey(path string) (key.MachinePrivate, error) {
	var k key.MachinePrivate
	b, err := loadOrCreate(path, func() []byte {
		text, _ := key.NewMachine().MarshalText()
		return text
	})
	if err != nil {
		return k, fmt.Errorf("control: server key: %w", err)
	}
	if err := k.UnmarshalText(b); err != nil {
		return k, fmt.Errorf("control: server key %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateRelaySecret reads the relay secret from path, or makes a
// random one and writes it there (0600, atomically) on first start.
// Standalone relays present it to fetch the allow list; the operator
// copies the file to them.
func LoadOrCreateRelaySecret(path string) (string, error) {
	b, err := loadOrCreate(path, func() []byte {
		var r [32]byte
		rand.Read(r[:])
		return []byte(hex.EncodeToString(r[:]))
	})
	if err != nil {
		return "", fmt.Errorf("control: relay secret: %w", err)
	}
	if len(b) < 16 {
		return "", fmt.Errorf("control: relay secret %s is shorter than 16 characters", path)
	}
	return string(b), nil
}

// loadOrCreate returns the trimmed contents of path, first writing
// create() there if the file does not exist: to a temporary file that is
// synced, then linked into place, so a crash leaves either no file or a
// whole one, and of two servers starting at once on one data dir the
// second fails instead of replacing the first one's file.
func loadOrCreate(path string, create func() []byte) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return bytes.TrimSpace(b), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	text := create()
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
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
		err = os.Link(f.Name(), path)
	}
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return text, nil
}

// Online reports whether the node has a live map stream now, on this
// server or, as far as the change feed says, on another.
func (s *Server) Online(id wire.NodeID) bool {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	e := s.m.nodes[id]
	return e != nil && e.online()
}

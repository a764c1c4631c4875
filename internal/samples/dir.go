package samples

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"weft/internal/wire"
)

// Dir keeps one Store per node in a directory: the control server's copy
// of the samples its nodes report, so `weft admin nodes health` answers
// for a node that is offline. Each node's file is NODEID.log, in Store's
// format. It is safe for concurrent use.
type Dir struct {
	dir  string
	opts Options

	mu     sync.Mutex
	stores map[wire.NodeID]*Store // guarded by mu; opened on first use
}

// OpenDir makes dir (owner-only) if needed.
func OpenDir(dir string, opts Options) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	return &Dir{dir: dir, opts: opts, stores: map[wire.NodeID]*Store{}}, nil
}

func (d *Dir) store(id wire.NodeID) (*Store, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.stores[id]; s != nil {
		return s, nil
	}
	s, err := Open(filepath.Join(d.dir, fmt.Sprintf("%d.log", id)), d.opts)
	if err != nil {
		return nil, err
	}
	d.stores[id] = s
	return s, nil
}

// Append records a node's samples.
func (d *Dir) Append(id wire.NodeID, ss []wire.HealthSample) error {
	s, err := d.store(id)
	if err != nil {
		return err
	}
	for _, smp := range ss {
		if err := s.Append(smp); err != nil {
			return err
		}
	}
	return nil
}

// Since returns a node's samples taken at or after t (all for a zero t).
func (d *Dir) Since(id wire.NodeID, t time.Time) ([]wire.HealthSample, error) {
	s, err := d.store(id)
	if err != nil {
		return nil, err
	}
	return s.Since(t), nil
}

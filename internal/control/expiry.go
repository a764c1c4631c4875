package control

import (
	"fmt"
	"slices"
	"time"

	"weft/internal/wire"
)

// Key expiry. A node whose key expired (naturally, by `weft admin nodes
// expire`, or by `weft logout`) is revoked: it stays in the mapper, so that
// a later registration can bring it back, but it leaves every peer's map
// as a removal (never as a changed record, which a peer would keep as a
// WireGuard peer), it is left out of full maps and deltas, and its own
// stream ends with node_key_expired. Natural expiry is a timer per node,
// so that a stream that is up when the key runs out does not outlive it.

// expiredError is the refusal a node gets once its key expired at t.
func expiredError(t time.Time) *wire.ErrorMessage {
	return &wire.ErrorMessage{
		Code: wire.CodeNodeKeyExpired,
		Message: fmt.Sprintf("this node's key expired at %s; run `weft up --auth-key KEY` with a new pre-auth key "+
			"(an administrator makes one with `weft admin keys create`)", t.UTC().Format(time.RFC3339)),
	}
}

// armExpiryLocked brings e's revocation and expiry timer in line with its
// current key expiry: revoked if it has passed, a timer for the moment it
// does otherwise. m.mu is held.
func (m *mapper) armExpiryLocked(id wire.NodeID, e *nodeEntry) {
	if e.expiry != nil {
		e.expiry.Stop()
		e.expiry = nil
	}
	exp := e.n.KeyExpiry
	now := m.s.cfg.Now()
	switch {
	case !exp.IsZero() && !now.Before(exp):
		m.revokeLocked(id, e)
	default:
		if e.revoked {
			// A new registration renewed the key: the node comes back
			// as a changed record, and an unsent removal is withdrawn.
			e.revoked = false
			m.removed = slices.DeleteFunc(m.removed, func(r wire.NodeID) bool { return r == id })
			m.markLocked(id, chFull)
		}
		if !exp.IsZero() && !m.closed {
			e.expiry = time.AfterFunc(exp.Sub(now), func() { m.keyExpiryDue(id) })
		}
	}
}

// keyExpiryDue runs when a node's expiry timer fires.
func (m *mapper) keyExpiryDue(id wire.NodeID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.nodes[id]; e != nil && !m.closed {
		// Re-arming checks the time again: a timer that fired a hair
		// early, or an injected clock, just arms a new one.
		m.armExpiryLocked(id, e)
	}
}

// revokeLocked takes a node whose key expired out of every map and ends
// its stream. m.mu is held.
func (m *mapper) revokeLocked(id wire.NodeID, e *nodeEntry) {
	if e.revoked {
		return
	}
	e.revoked = true
	delete(m.dirty, id)
	if !slices.Contains(m.removed, id) {
		m.removed = append(m.removed, id)
	}
	if e.sess != nil {
		e.sess.fail(expiredError(e.n.KeyExpiry))
	}
	m.s.log.Info("node key expired; node removed from every map", "node", id, "expiry", e.n.KeyExpiry)
	m.scheduleLocked()
}

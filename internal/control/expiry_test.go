package control

import (
	"context"
	"slices"
	"testing"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// TestExpiredNodeRevokedEverywhere is the standing case "expired or
// revoked key → no map, and peers drop it": whichever way a node's key
// stops being valid, every peer gets it in peers_removed (not as a changed
// record it would keep as a WireGuard peer), a fresh full map leaves it
// out, and its own live stream ends with node_key_expired.
func TestExpiredNodeRevokedEverywhere(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		lifetime time.Duration // the victim's node key lifetime; 0: default
		revoke   func(h *harness, victim *simNode)
		wantCode wire.ErrorCode
	}{
		{"admin expires it", 0, func(h *harness, v *simNode) {
			if _, err := h.st.ExpireNode(ctx, v.self.ID); err != nil {
				t.Fatal(err)
			}
			h.srv.NodeChanged(v.self.ID)
		}, wire.CodeNodeKeyExpired},
		{"it logs out", 0, func(h *harness, v *simNode) {
			if em := h.srv.logout(ctx, v.machine.Public(), &wire.LogoutRequest{NodeKey: v.node.Public()}, h.srv.log); em != nil {
				t.Fatal(em)
			}
		}, wire.CodeNodeKeyExpired},
		// The key runs out while its stream is up: a timer, not the next
		// stream start, takes it out.
		{"its key lifetime ends", 3 * time.Second, func(*harness, *simNode) {}, wire.CodeNodeKeyExpired},
		{"an administrator deletes it", 0, func(h *harness, v *simNode) {
			if err := h.st.DeleteNode(ctx, v.self.ID); err != nil {
				t.Fatal(err)
			}
			h.srv.NodeRemoved(v.self.ID)
		}, wire.CodeNotRegistered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.NodeKeyLifetime = tt.lifetime })
			// Tagged keys never expire: only the victim's lifetime runs.
			tagged := h.authKey(store.AuthKeyRequest{Reusable: true, Tags: []string{"tag:server"}})
			watcher := h.newSim("watcher")
			watcher.mustRegister(t, tagged)
			victim := h.newSim("victim")
			victim.mustRegister(t, h.authKey(store.AuthKeyRequest{}))
			for _, n := range []*simNode{watcher, victim} {
				if err := n.stream(ctx); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(n.close)
			}
			var ms mapState
			for ms.online[victim.self.ID] != true {
				ms.apply(t, watcher.next(t))
			}
			// The watcher may still have frames in flight that were
			// built while the victim's key was valid: under load, the
			// flush announcing the victim's registration can run after
			// the watcher's full map already showed it online, and that
			// frame rightly carries it as changed. Flushing what is
			// pending now (rather than when the batch window ends)
			// gives every frame built before the revocation a seq of
			// at most before; only later frames are held to "never as
			// changed".
			before := h.srv.m.flushNow()
			tt.revoke(h, victim)
			for {
				r := watcher.next(t)
				if r.Seq > before && slices.ContainsFunc(r.PeersChanged, func(p *wire.Node) bool { return p.ID == victim.self.ID }) {
					t.Fatalf("peer got the revoked node as changed (it would keep it as a WireGuard peer): %+v", r)
				}
				if slices.Contains(r.PeersRemoved, victim.self.ID) {
					break
				}
			}
			select {
			case err := <-victim.errc:
				em, ok := err.(*wire.ErrorMessage)
				if !ok || em.Code != tt.wantCode {
					t.Fatalf("revoked node's stream ended with %v, want %s", err, tt.wantCode)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("revoked node's stream stayed open")
			}
			// A peer that connects afresh does not get it in its full map.
			late := h.newSim("late")
			late.mustRegister(t, tagged)
			if err := late.stream(ctx); err != nil {
				t.Fatal(err)
			}
			defer late.close()
			full := late.next(t)
			if slices.ContainsFunc(full.Peers, func(p *wire.Node) bool { return p.ID == victim.self.ID }) {
				t.Fatalf("full map still holds the revoked node")
			}
			// And it may not start a stream again.
			victim.msgs = nil
			if err := victim.stream(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-victim.errc:
				if _, ok := err.(*wire.ErrorMessage); !ok {
					t.Fatalf("revoked node's new stream ended with %v, want a refusal", err)
				}
			case r := <-victim.msgs:
				t.Fatalf("revoked node got a map: %+v", r)
			case <-time.After(10 * time.Second):
				t.Fatal("revoked node's new stream neither refused nor served")
			}
		})
	}
}

// TestRenewedNodeComesBack checks the way back: a node whose key expired
// and that registers again with a pre-auth key reappears in its peers'
// maps as a changed record after being removed.
func TestRenewedNodeComesBack(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	watcher, victim := h.newSim("watcher"), h.newSim("victim")
	watcher.mustRegister(t, k)
	victim.mustRegister(t, k)
	if err := watcher.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer watcher.close()
	watcher.next(t)
	if _, err := h.st.ExpireNode(ctx, victim.self.ID); err != nil {
		t.Fatal(err)
	}
	h.srv.NodeChanged(victim.self.ID)
	for r := watcher.next(t); !slices.Contains(r.PeersRemoved, victim.self.ID); r = watcher.next(t) {
	}
	victim.node = newNodeKey()
	victim.mustRegister(t, k)
	for {
		r := watcher.next(t)
		if slices.Contains(r.PeersRemoved, victim.self.ID) {
			t.Fatalf("renewed node removed again: %+v", r)
		}
		if slices.ContainsFunc(r.PeersChanged, func(p *wire.Node) bool { return p.ID == victim.self.ID && p.NodeKey == victim.node.Public() }) {
			return
		}
	}
}

// TestFullMapCarriesServerTime: nodes measure their clock's skew against
// the server's from the full map, to judge peers' key expiry offline.
func TestFullMapCarriesServerTime(t *testing.T) {
	at := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	h := newHarness(t, func(c *Config) { c.Now = func() time.Time { return at } })
	n := h.newSim("a")
	n.mustRegister(t, h.authKey(store.AuthKeyRequest{}))
	if err := n.stream(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.close()
	if r := n.next(t); !r.ServerTime.Equal(at) {
		t.Fatalf("full map server time %v, want %v", r.ServerTime, at)
	}
}

// flushNow sends what the batch window holds at once and returns the seq
// of the last frame built so far: every frame built before the call has
// a seq of at most that. (The scheduled flush that follows finds nothing
// to send and builds no frame.)
func (m *mapper) flushNow() uint64 {
	m.flush()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}

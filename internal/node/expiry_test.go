package node_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/control"
	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/store"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
	"weft/internal/wire"
)

// recEngine is a data plane that records the maps it is handed and
// whether it was closed.
type recEngine struct {
	mu     sync.Mutex
	nm     *controlclient.NetMap
	closed bool
}

func (e *recEngine) SetNetMap(nm *controlclient.NetMap) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nm = nm
}
func (e *recEngine) FillStatus(*localapi.Status) {}
func (e *recEngine) Ping(context.Context, localapi.PingRequest) (*localapi.PingResult, error) {
	return nil, errors.New("recEngine: no ping")
}
func (e *recEngine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

// hasPeer reports whether the last map handed to the data plane holds a
// peer named name.
func (e *recEngine) hasPeer(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.nm == nil {
		return false
	}
	for _, p := range e.nm.Peers {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (e *recEngine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// TestExpiredNodeDroppedByPeersAndStopped: when a node's key expires, its
// peers drop it from their data plane and the node stops its own, saying
// why; both with control reachable and with control gone (where each node
// judges the expiry itself from the time in its map).
func TestExpiredNodeDroppedByPeersAndStopped(t *testing.T) {
	for _, tt := range []struct {
		name     string
		lifetime time.Duration
		expire   func(t *testing.T, e *controltest.Env, victim *wire.Node)
	}{
		{"an administrator expires it", 0, func(t *testing.T, e *controltest.Env, v *wire.Node) {
			if _, err := e.Store.ExpireNode(context.Background(), v.ID); err != nil {
				t.Fatal(err)
			}
			e.Server.NodeChanged(v.ID)
		}},
		{"its key runs out with control unreachable", 4 * time.Second, func(t *testing.T, e *controltest.Env, v *wire.Node) {
			e.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "down", http.StatusServiceUnavailable)
			}))
			e.Server.Close()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := controltest.NewTuned(t, func(c *control.Config) { c.NodeKeyLifetime = tt.lifetime })
			ctx := context.Background()
			tagged, _, err := e.Store.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Tags: []string{"tag:server"}})
			if err != nil {
				t.Fatal(err)
			}
			peer, peerEng := engineDaemon(t)
			victim, victimEng := engineDaemon(t)
			if _, err := peer.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: tagged, Hostname: "peer"}); err != nil {
				t.Fatal(err)
			}
			vs, err := victim.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: e.AuthKey(false), Hostname: "victim"})
			if err != nil {
				t.Fatal(err)
			}
			tstest.Eventually(t, "peer's data plane has the victim", func() bool { return peerEng.hasPeer("victim") })
			tt.expire(t, e, vs.Self)

			tstest.Eventually(t, "peer's data plane drops the expired victim", func() bool { return !peerEng.hasPeer("victim") })
			tstest.Eventually(t, "expired victim's data plane stopped", victimEng.isClosed)
			st, err := victim.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.BackendState != localapi.StateNeedsLogin || !strings.Contains(st.LastError, "this node's key expired at ") ||
				!strings.Contains(st.LastError, "weft up --auth-key") {
				t.Fatalf("expired node's status: %s, %q", st.BackendState, st.LastError)
			}
			for _, h := range st.Health {
				if strings.Contains(h, "control server unreachable") {
					t.Errorf("an expired node's status blames the control server: %q", h)
				}
			}
			ps, _ := peer.Status(ctx)
			for _, p := range ps.Peers {
				if p.Name == "victim" {
					t.Fatal("peer's status still lists the expired victim")
				}
			}
			if peerEng.isClosed() {
				t.Fatal("the peer's own data plane stopped")
			}
		})
	}
}

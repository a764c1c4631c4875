package node_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"weft/internal/localapi"
	"weft/internal/node"
	"weft/internal/nodestate"
	"weft/internal/store"
	"weft/internal/tstest/controltest"
)

// countingDaemon is a daemon whose data plane is a recEngine, counting
// how many times a data plane was started.
func countingDaemon(t *testing.T) (*node.Daemon, *nodestate.Dir, *recEngine, *atomic.Int32) {
	t.Helper()
	eng := &recEngine{}
	var starts atomic.Int32
	d, st := dataPlaneDaemon(t, eng, &starts)
	return d, st, eng, &starts
}

// TestUpAgainChangesNothing: `weft up` on a node that is up, with nothing
// new or with routing flags only, keeps the map stream and the data plane
// (an exit node's clients lose nothing); a new node key or server starts
// them again.
func TestUpAgainChangesNothing(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	k := e.AuthKey(true)
	d, st, eng, starts := countingDaemon(t)
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "busan"}); err != nil {
		t.Fatal(err)
	}
	yes := true
	steps := []struct {
		name       string
		req        localapi.UpRequest
		wantStarts int32
	}{
		{"up with nothing", localapi.UpRequest{}, 1},
		{"up with the same server, key and name", localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "busan"}, 1},
		{"up with a routing flag", localapi.UpRequest{Prefs: &localapi.PrefsEdit{AdvertiseExitNode: &yes}}, 1},
		{"up --rotate-key", localapi.UpRequest{RotateKey: true}, 2},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if _, err := d.Up(ctx, s.req); err != nil {
				t.Fatal(err)
			}
			if got := starts.Load(); got != s.wantStarts {
				t.Errorf("data plane started %d times, want %d", got, s.wantStarts)
			}
			if s.wantStarts == 1 && eng.isClosed() {
				t.Error("the data plane was closed")
			}
			if stat, err := d.Status(ctx); err != nil || stat.BackendState != localapi.StateRunning {
				t.Errorf("after up: %v %v", stat, err)
			}
		})
	}
	if p, _ := st.LoadPrefs(); !p.AdvertiseExitNode {
		t.Error("the routing flag given to up was not saved")
	}
}

// TestUpSaysWhatItDidNot: a new --hostname on a registered node is refused
// with the command that renames it, and changes nothing; registering a
// tagged node again with an untagged key says it lost its tags and how to
// get them back.
func TestUpSaysWhatItDidNot(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	tagged, _, err := e.Store.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Tags: []string{"tag:server"}, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	d, st, _, _ := countingDaemon(t)
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: tagged, Hostname: "busan"}); err != nil {
		t.Fatal(err)
	}
	before, _ := st.LoadPrefs()
	_, err = d.Up(ctx, localapi.UpRequest{Hostname: "busan2"})
	if err == nil || !strings.Contains(err.Error(), "weft admin nodes rename busan busan2") {
		t.Fatalf("up --hostname busan2 on busan: %v, want the rename command", err)
	}
	if after, _ := st.LoadPrefs(); after.Hostname != before.Hostname {
		t.Errorf("a refused up changed the saved hostname to %q", after.Hostname)
	}
	stat, err := d.Up(ctx, localapi.UpRequest{AuthKey: e.AuthKey(false)})
	if err != nil {
		t.Fatal(err)
	}
	if len(stat.Notices) != 1 || !strings.Contains(stat.Notices[0], "tag:server") || !strings.Contains(stat.Notices[0], "--tags tag:server") {
		t.Errorf("up with an untagged key on a tagged node: notices %q, want one naming the lost tag and the key to create", stat.Notices)
	}
}

// TestUpServerURLWithoutScheme: a server given without http:// is refused
// before anything is dialed, saying what to add.
func TestUpServerURLWithoutScheme(t *testing.T) {
	d, st, _, starts := countingDaemon(t)
	_, err := d.Up(context.Background(), localapi.UpRequest{ServerURL: "203.0.113.10:8080", AuthKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "add http:// or https://") {
		t.Fatalf("up --server 203.0.113.10:8080: %v, want advice to add the scheme", err)
	}
	if p, _ := st.LoadPrefs(); p.ServerURL != "" || starts.Load() != 0 {
		t.Errorf("a refused up saved server %q and started %d data planes", p.ServerURL, starts.Load())
	}
}

package healthlog

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"weft/internal/localapi"
	"weft/internal/wire"
)

// restarting is a daemon that connects on its third status and whose
// peer busan answers over the relay twice, then directly; pc is offline.
type restarting struct {
	mu       sync.Mutex
	statuses int
	pings    map[string]int
}

func (r *restarting) Status(context.Context) (*localapi.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses++
	state := localapi.StateStarting
	if r.statuses >= 3 {
		state = localapi.StateRunning
	}
	return &localapi.Status{BackendState: state, Peers: []*localapi.PeerStatus{
		{Node: &wire.Node{Name: "busan", Online: true}}, {Node: &wire.Node{Name: "pc"}},
	}}, nil
}

func (r *restarting) Ping(_ context.Context, req localapi.PingRequest) (*localapi.PingResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Peer != "busan" {
		return nil, errors.New("pinged an offline peer")
	}
	r.pings[req.Peer]++
	kind := localapi.PathRelay
	if r.pings[req.Peer] >= 3 {
		kind = localapi.PathDirect
	}
	return &localapi.PingResult{Name: req.Peer, Path: localapi.Path{Kind: kind}}, nil
}

// TestMeasureRecovery runs on synctest's fake clock: the poll count, not
// the machine's load, decides the times measured.
func TestMeasureRecovery(t *testing.T) {
	synctest.Test(t, testMeasureRecovery)
}

func testMeasureRecovery(t *testing.T) {
	src := &restarting{pings: map[string]int{}}
	started := time.Now()
	ev, ok := MeasureRecovery(context.Background(), src, started, true)
	if !ok {
		t.Fatal("not measured")
	}
	r := ev.Recovery
	if ev.Kind != localapi.EventRecovery || r == nil || !r.Started.Equal(started) || !r.Unclean || r.DirectPeer != "busan" {
		t.Fatalf("event %+v, recovery %+v", ev, r)
	}
	// Registered at the third look (two polls after start), direct two
	// relayed pongs later.
	if !(r.RegisteredMS >= 2*float64(recoveryPoll.Milliseconds()) && r.DirectMS >= r.RegisteredMS+2*float64(recoveryPoll.Milliseconds())) {
		t.Errorf("registered after %v ms, direct after %v ms", r.RegisteredMS, r.DirectMS)
	}
	if !strings.Contains(ev.Text, "unclean stop") || !strings.Contains(ev.Text, "first direct pong (from busan)") {
		t.Errorf("text %q", ev.Text)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := MeasureRecovery(ctx, src, time.Now(), false); ok {
		t.Error("measured after ctx ended")
	}
}

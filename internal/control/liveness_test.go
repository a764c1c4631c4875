package control

import (
	"context"
	"slices"
	"testing"
	"time"

	"weft/internal/changefeed"
	"weft/internal/store"
	"weft/internal/wire"
)

// livePair is two servers on one store and one hub (as newPair), with
// their liveness timing set, each streaming one node; the nodes see each
// other online.
type livePair struct {
	hub    *changefeed.Hub
	a, b   *harness
	na, nb *simNode
	va, vb feedView
}

func newLivePair(t *testing.T, interval, timeout time.Duration) *livePair {
	t.Helper()
	p := &livePair{}
	p.hub, p.a, p.b = newPairWith(t, func(c *Config) { c.HeartbeatInterval, c.ServerTimeout = interval, timeout })
	k := p.a.authKey(store.AuthKeyRequest{Reusable: true})
	p.na, p.nb = p.a.newSim("na"), p.b.newSim("nb")
	for _, n := range []*simNode{p.na, p.nb} {
		n.mustRegister(t, k)
		if err := n.stream(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.close)
	}
	p.vb.await(t, p.nb, "na online", func() bool { return p.vb.peers[p.na.self.ID].Online })
	p.va.await(t, p.na, "nb online", func() bool { return p.va.peers[p.nb.self.ID].Online })
	return p
}

// listen delivers the events a new member of the hub hears from now on.
func listen(t *testing.T, hub *changefeed.Hub) (changefeed.Feed, <-chan changefeed.Event) {
	f := hub.Feed()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan changefeed.Event, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, func(evs []changefeed.Event) {
			for _, ev := range evs {
				ch <- ev
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f, ch
}

// TestDeadServerNodesGoOffline: a server that dies without a word (here a
// ghost: a liveness row and an online event, then silence) has its node
// shown offline by both live servers once its row stood still for the
// server timeout; exactly one of them claims it and says it is gone.
func TestDeadServerNodesGoOffline(t *testing.T) {
	// Generous against a loaded machine: a live server's heartbeat (an
	// SQLite write) must never stall for the timeout.
	const interval, timeout = 100 * time.Millisecond, 2 * time.Second
	p := newLivePair(t, interval, timeout)
	ctx := context.Background()
	nx := p.a.newSim("nx") // registered, never streams at A or B
	nx.mustRegister(t, p.a.authKey(store.AuthKeyRequest{}))
	idX := nx.self.ID

	ghost, heard := listen(t, p.hub)
	if _, err := p.a.st.Heartbeat(ctx, ghost.Origin(), 1); err != nil {
		t.Fatal(err)
	}
	if err := ghost.Publish(ctx, changefeed.Event{Kind: changefeed.KindOnline, Nodes: []wire.NodeID{idX}}); err != nil {
		t.Fatal(err)
	}
	p.va.await(t, p.na, "nx online (at the ghost)", func() bool { return p.va.peers[idX].Online })
	p.vb.await(t, p.nb, "nx online (at the ghost)", func() bool { return p.vb.peers[idX].Online })

	// The ghost says nothing more.
	p.va.await(t, p.na, "nx offline once the ghost is found dead", func() bool { return !p.va.peers[idX].Online })
	p.vb.await(t, p.nb, "nx offline once the ghost is found dead", func() bool { return !p.vb.peers[idX].Online })
	if p.a.srv.Online(idX) || p.b.srv.Online(idX) {
		t.Fatal("a server still counts nx online")
	}
	// The live servers' nodes stayed online.
	if !p.va.peers[p.nb.self.ID].Online || !p.vb.peers[p.na.self.ID].Online {
		t.Fatal("a live server's node went offline too")
	}
	rows, err := p.a.st.ListServers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	origins := []string{p.a.srv.cfg.Feed.Origin(), p.b.srv.cfg.Feed.Origin()}
	slices.Sort(origins)
	if len(rows) != 2 || rows[0].Origin != origins[0] || rows[1].Origin != origins[1] {
		t.Fatalf("liveness rows %+v, want only the live servers %v", rows, origins)
	}
	// Exactly one gone event names the ghost, even after a few more
	// rounds of both servers watching.
	time.Sleep(5 * interval)
	gone := 0
	for len(heard) > 0 {
		if ev := <-heard; ev.Kind == changefeed.KindGone && ev.Server == ghost.Origin() {
			gone++
		}
	}
	if gone != 1 {
		t.Fatalf("%d gone events for the ghost, want exactly 1", gone)
	}
}

// TestServerTakenForDeadAnnouncesAgain: a live server that the others took
// for dead (its row was claimed while it could not reach the store) hears
// the gone event about itself and says again which nodes stream at it, so
// they come back online everywhere.
func TestServerTakenForDeadAnnouncesAgain(t *testing.T) {
	p := newLivePair(t, 20*time.Millisecond, time.Hour) // nobody is found dead by the clock
	ctx := context.Background()
	originA, idA := p.a.srv.cfg.Feed.Origin(), p.na.self.ID
	other, heard := listen(t, p.hub)
	if err := other.Publish(ctx, changefeed.Event{Kind: changefeed.KindGone, Server: originA}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-heard:
			if ev.Kind == changefeed.KindOnline && ev.Origin == originA && slices.Contains(ev.Nodes, idA) {
				p.vb.await(t, p.nb, "na online again", func() bool { return p.vb.peers[idA].Online && p.b.srv.Online(idA) })
				return
			}
		case <-deadline:
			t.Fatal("server A never announced na again after the others took it for dead")
		}
	}
}

// TestClosedServerNodesGoOffline: a server that stops cleanly says so
// (gone, for itself) and removes its liveness row, so its nodes are shown
// offline at once, not after the server timeout.
func TestClosedServerNodesGoOffline(t *testing.T) {
	p := newLivePair(t, 20*time.Millisecond, time.Hour)
	originA, idA := p.a.srv.cfg.Feed.Origin(), p.na.self.ID
	p.a.srv.Close()
	p.vb.await(t, p.nb, "na offline after A stopped", func() bool { return !p.vb.peers[idA].Online })
	rows, err := p.b.st.ListServers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Origin == originA {
			t.Fatalf("A's liveness row %+v is still there after it stopped", r)
		}
	}
}

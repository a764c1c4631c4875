package control

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// TestHostinfoChangeIsAPatch: a node's new host facts reach its peers as
// a patch carrying just them, not as its whole record again; an update
// that changes nothing sends nothing.
func TestHostinfoChangeIsAPatch(t *testing.T) {
	h := newHarness(t, nil)
	nodes := h.streamingNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	var ms mapState
	for ms.online[b.self.ID] != true {
		ms.apply(t, a.next(t))
	}
	a.expectQuiet(t, 100*time.Millisecond)
	hi := &wire.Hostinfo{Hostname: "b", OS: "linux", Version: "2", NetInfo: &wire.NetInfo{UDP: true, PreferredRegion: 1}}
	if err := b.sendUpdate(&wire.Update{HomeRegion: -1, Hostinfo: hi}); err != nil {
		t.Fatal(err)
	}
	r := a.next(t)
	if len(r.PeersChanged) != 0 || len(r.PeersPatched) != 1 {
		t.Fatalf("peer got %+v, want one patch", r)
	}
	p := r.PeersPatched[0]
	if p.Hostinfo == nil || p.Hostinfo.Version != "2" || p.Endpoints != nil || p.Online != nil {
		t.Fatalf("patch %+v, want the new hostinfo alone", p)
	}
	// The same facts again change nothing, so nothing is sent.
	if err := b.sendUpdate(&wire.Update{HomeRegion: -1, Hostinfo: hi}); err != nil {
		t.Fatal(err)
	}
	a.expectQuiet(t, 200*time.Millisecond)
}

// TestUpdateFloodIsCoalesced: a node that sends changes faster than its
// rate limit gets its burst through at once; the rest wait, merged, and
// the newest value arrives once the bucket refills. The clock is the
// server's (frozen here, then moved), so nothing depends on timing.
func TestUpdateFloodIsCoalesced(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	h := newHarness(t, func(c *Config) { c.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	watcher, flooder := h.newSim("watcher"), h.newSim("flooder")
	watcher.mustRegister(t, k)
	flooder.mustRegister(t, k)
	ctx := context.Background()
	for _, n := range []*simNode{watcher, flooder} {
		if err := n.stream(ctx); err != nil {
			t.Fatal(err)
		}
		defer n.close()
	}
	var ms mapState
	for ms.online[flooder.self.ID] != true {
		ms.apply(t, watcher.next(t))
	}
	// The full map is built when it is written, so it may already show
	// what a delta queued behind it repeats: let those pass first.
	for settled := false; !settled; {
		select {
		case r := <-watcher.msgs:
			ms.apply(t, r)
		case <-time.After(100 * time.Millisecond):
			settled = true
		}
	}

	// Each change is sent once the previous one arrived (or clearly did
	// not), so the batch window cannot merge them.
	const sent = DefaultUpdateBurst + 4
	delivered := 0
	for i := range sent {
		hi := &wire.Hostinfo{Hostname: "flooder", Version: fmt.Sprint(i)}
		if err := flooder.sendUpdate(&wire.Update{HomeRegion: -1, Hostinfo: hi}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-watcher.msgs:
			delivered++
		case <-time.After(300 * time.Millisecond):
		}
	}
	if delivered != DefaultUpdateBurst {
		t.Fatalf("%d of %d changes reached the peer at once, want the burst of %d", delivered, sent, DefaultUpdateBurst)
	}
	// Time passes: the newest value, and only it, arrives.
	clock.Add(int64(time.Minute))
	r := watcher.next(t)
	if len(r.PeersPatched) != 1 || r.PeersPatched[0].Hostinfo == nil || r.PeersPatched[0].Hostinfo.Version != fmt.Sprint(sent-1) {
		t.Fatalf("after the wait the peer got %+v, want the newest hostinfo", r)
	}
	watcher.expectQuiet(t, 200*time.Millisecond)
}

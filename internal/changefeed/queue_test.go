package changefeed

import (
	"context"
	"fmt"
	"testing"
	"time"

	"weft/internal/wire"
)

// batches runs f's Run with a handler that blocks until release is
// closed on its first call, and returns the channel of the batches it
// gets.
func batches(t *testing.T, f Feed, release <-chan struct{}) <-chan []Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan []Event, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, func(evs []Event) {
			ch <- evs
			<-release
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func nextBatch(t *testing.T, ch <-chan []Event) []Event {
	t.Helper()
	select {
	case evs := <-ch:
		return evs
	case <-time.After(20 * time.Second):
		t.Fatal("no batch delivered")
		return nil
	}
}

// checkBatch checks that got is the n runtime events of nodes 1 to n, in
// that order.
func checkBatch(t *testing.T, got []Event, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("a batch of %d events, want all %d in one", len(got), n)
	}
	for i, ev := range got {
		if ev.Kind != KindRuntime || ev.Nodes[0] != wire.NodeID(i+1) {
			t.Fatalf("event %d of the batch is %+v, want node %d: in the order published", i, ev, i+1)
		}
	}
}

// TestHubDeliversBacklogInOneBatch: events published while the handler
// works come in one call, in order, not one call each.
func TestHubDeliversBacklogInOneBatch(t *testing.T) {
	h := NewHub()
	a, b := h.Feed(), h.Feed()
	release := make(chan struct{})
	ch := batches(t, b, release)
	ctx := context.Background()
	if err := a.Publish(ctx, Event{Kind: KindDNS}); err != nil {
		t.Fatal(err)
	}
	if first := nextBatch(t, ch); len(first) != 1 || first[0].Kind != KindDNS {
		t.Fatalf("first batch %+v", first)
	}
	const n = 1000
	for i := 1; i <= n; i++ {
		if err := a.Publish(ctx, Event{Kind: KindRuntime, Nodes: []wire.NodeID{wire.NodeID(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	checkBatch(t, nextBatch(t, ch), n)
	select {
	case evs := <-ch:
		t.Fatalf("a further batch %+v", evs)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestQueueOverflowResyncs: past MaxQueued the waiting events are
// dropped for one resync, and what comes after is kept behind it.
func TestQueueOverflowResyncs(t *testing.T) {
	for _, tt := range []struct {
		pushed, wantLen int
		wantResync      bool
	}{
		{0, 0, false},
		{1, 1, false},
		{MaxQueued, MaxQueued, false},
		{MaxQueued + 1, 2, true},
		{MaxQueued + 5, 6, true},
		{2*MaxQueued + 3, 4, true}, // dropped twice: the last three remain
	} {
		t.Run(fmt.Sprint(tt.pushed), func(t *testing.T) {
			q := newQueue()
			for i := 1; i <= tt.pushed; i++ {
				q.push(Event{Version: Version, Kind: KindNode, Nodes: []wire.NodeID{wire.NodeID(i)}})
			}
			got := q.take()
			if len(got) != tt.wantLen || tt.wantResync != (len(got) > 0 && got[0].Kind == KindResync) {
				t.Fatalf("took %d events (first %+v), want %d, resync first %v", len(got), got[:min(1, len(got))], tt.wantLen, tt.wantResync)
			}
			if n := len(got); n > 0 && got[n-1].Nodes[0] != wire.NodeID(tt.pushed) {
				t.Fatalf("last event %+v, want the last pushed", got[n-1])
			}
			if again := q.take(); len(again) != 0 {
				t.Fatalf("second take %+v", again)
			}
		})
	}
}

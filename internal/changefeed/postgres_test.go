package changefeed

import (
	"context"
	"testing"
	"time"

	"weft/internal/pgtest"
	"weft/internal/wire"
)

// postgresPair starts a PostgreSQL server with one database and opens two
// feeds on it, closed when the test ends.
func postgresPair(t *testing.T) (srv *pgtest.Server, a, b *Postgres) {
	t.Helper()
	srv = pgtest.Start(t, pgtest.Options{})
	url := srv.CreateDB(t)
	open := func() *Postgres {
		f, err := NewPostgres(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	return srv, open(), open()
}

// TestPostgresFeed runs two feeds on one real PostgreSQL: events cross
// between them, never come back to their sender, and after the database
// restarts each feed reconnects by itself, says resync, and carries
// events again.
func TestPostgresFeed(t *testing.T) {
	srv, a, b := postgresPair(t)
	chA, chB := collect(t, a), collect(t, b)
	for _, ch := range []<-chan Event{chA, chB} {
		if ev := next(t, ch); ev.Kind != KindResync {
			t.Fatalf("first event %+v, want a resync", ev)
		}
	}
	ctx := context.Background()
	if err := a.Publish(ctx, Event{Kind: KindRuntime, Nodes: []wire.NodeID{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, chB); ev.Kind != KindRuntime || ev.Origin != a.Origin() || len(ev.Nodes) != 2 {
		t.Fatalf("b got %+v", ev)
	}
	if err := a.Err(); err != nil {
		t.Fatalf("a.Err while listening: %v", err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan Event{chA, chB} {
		if ev := next(t, ch); ev.Kind != KindResync {
			t.Fatalf("after a restart %+v, want a resync", ev)
		}
	}
	// The publishing connection died with the restart: the first
	// publish may fail, after which it redials.
	if err := b.Publish(ctx, Event{Kind: KindPolicy}); err != nil {
		t.Logf("first publish after the restart: %v", err)
		if err := b.Publish(ctx, Event{Kind: KindPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	if ev := next(t, chA); ev.Kind != KindPolicy || ev.Origin != b.Origin() {
		t.Fatalf("a got %+v after the restart", ev)
	}
}

// TestPostgresDeliversBacklogInBatches: NOTIFYs that arrive while the
// handler works are read meanwhile and handed over together, in order.
func TestPostgresDeliversBacklogInBatches(t *testing.T) {
	_, a, b := postgresPair(t)
	release := make(chan struct{})
	ch := batches(t, b, release)
	// The first batch is the resync of the first LISTEN; its handler
	// blocks until release, while a publishes.
	if first := nextBatch(t, ch); len(first) != 1 || first[0].Kind != KindResync {
		t.Fatalf("first batch %+v, want a resync", first)
	}
	const n = 500
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		if err := a.Publish(ctx, Event{Kind: KindRuntime, Nodes: []wire.NodeID{wire.NodeID(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// PostgreSQL delivers a NOTIFY a moment after the publish returns:
	// release the handler once b has read them all.
	for deadline := time.Now().Add(20 * time.Second); b.received.Load() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b read %d of %d events", b.received.Load(), n)
		}
	}
	close(release)
	checkBatch(t, nextBatch(t, ch), n)
}

package changefeed

import (
	"context"
	"testing"

	"weft/internal/pgtest"
	"weft/internal/wire"
)

// TestPostgresFeed runs two feeds on one real PostgreSQL: events cross
// between them, never come back to their sender, and after the database
// restarts each feed reconnects by itself, says resync, and carries
// events again.
func TestPostgresFeed(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := srv.CreateDB(t)
	a, err := NewPostgres(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewPostgres(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
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

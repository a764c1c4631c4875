package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestServerLiveness(t *testing.T) { forEachStore(t, testServerLiveness) }

// testServerLiveness checks the liveness rows of control servers: a
// heartbeat makes or bumps a row; a claim on a counter that moved on
// fails; a claim on a silent server's counter removes the row once,
// however many servers race for it; the claimed server's next heartbeat
// learns that it was taken for dead.
func testServerLiveness(t *testing.T, f *fixture) {
	ctx := context.Background()
	beat := func(origin string, n int64, wantKnown bool) {
		t.Helper()
		known, err := f.s.Heartbeat(ctx, origin, n)
		if err != nil || known != wantKnown {
			t.Fatalf("Heartbeat(%s, %d) = %v, %v; want known %v", origin, n, known, err, wantKnown)
		}
	}
	beat("a", 1, false)
	beat("a", 2, true)
	beat("b-2", 7, false)
	list, err := f.s.ListServers(ctx)
	if err != nil || len(list) != 2 || list[0].Origin != "a" || list[0].Beat != 2 || list[1].Origin != "b-2" || list[1].Beat != 7 {
		t.Fatalf("ListServers = %+v, %v", list, err)
	}
	if !list[0].At.Equal(f.clock.Now()) {
		t.Errorf("beat at %v, want the store's clock %v", list[0].At, f.clock.Now())
	}

	// a beat again since the counter 2 was read: not dead.
	beat("a", 3, true)
	if ok, err := f.s.ClaimDeadServer(ctx, "a", 2); err != nil || ok {
		t.Fatalf("claim on a counter that moved on = %v, %v; want false", ok, err)
	}

	// b stays silent at 7: of many claims from two store handles (two
	// servers), exactly one wins.
	other := f.second()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := []Store{f.s, other}[i%2]
			ok, err := st.ClaimDeadServer(ctx, "b-2", 7)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims on a silent server won, want exactly 1", wins.Load())
	}
	if list, _ := f.s.ListServers(ctx); len(list) != 1 || list[0].Origin != "a" {
		t.Fatalf("after the claim: %+v, want only a", list)
	}
	// b was only slow, not dead: its next beat says it was taken for dead.
	beat("b-2", 8, false)

	if err := f.s.RemoveServer(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if list, _ := f.s.ListServers(ctx); len(list) != 1 || list[0].Origin != "b-2" {
		t.Fatalf("after a's removal: %+v, want only b-2", list)
	}
	if _, err := f.s.Heartbeat(ctx, "bad origin", 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Heartbeat with a bad origin: %v, want ErrInvalid", err)
	}
}

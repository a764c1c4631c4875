package control

import (
	"context"
	"runtime"
	"testing"
	"time"

	"weft/internal/store"
)

// TestCloseLeavesNoGoroutines connects nodes, closes the server under
// them, and checks that every goroutine the server started has ended.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	var nodes []*simNode
	for _, name := range []string{"a", "b", "c"} {
		n := h.newSim(name)
		n.mustRegister(t, k)
		if err := n.stream(context.Background()); err != nil {
			t.Fatal(err)
		}
		n.next(t)
		nodes = append(nodes, n)
	}
	h.close()
	for _, n := range nodes {
		select {
		case <-n.errc:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s's stream still open after server Close", n.name)
		}
		n.close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

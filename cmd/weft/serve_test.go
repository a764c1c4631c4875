package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// TestServiceGroupShutdownOrder checks that after the parent context ends
// the steps run in order, and that only then the goroutines see their
// context end, and that Wait waits for them.
func TestServiceGroupShutdownOrder(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	g := newServiceGroup(parent)
	var mu sync.Mutex
	var events []string
	record := func(s string) {
		mu.Lock()
		events = append(events, s)
		mu.Unlock()
	}
	ended := make(chan struct{})
	for i := range 2 {
		g.Go(func(ctx context.Context) error {
			<-ctx.Done()
			// Wait must not return before this goroutine does.
			<-ended
			record(fmt.Sprintf("goroutine %d", i))
			return ctx.Err()
		})
	}
	stop()
	err := g.Wait(parent, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(context.Context) { record("step 1") },
		func(ctx context.Context) {
			if g.ctx.Err() != nil {
				t.Error("the group's context ended before the last step")
			}
			record("step 2")
			close(ended)
		})
	if err != nil {
		t.Fatalf("Wait = %v, want nil after the parent ended", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 || !slices.Equal(events[:2], []string{"step 1", "step 2"}) {
		t.Fatalf("events = %q, want both steps in order, then both goroutines", events)
	}
}

// TestServiceGroupFailure checks that a goroutine's error ends the group
// and is returned, and that http.ErrServerClosed is not a failure.
func TestServiceGroupFailure(t *testing.T) {
	boom := errors.New("STUN: address in use")
	g := newServiceGroup(context.Background())
	g.Go(func(ctx context.Context) error {
		<-ctx.Done()
		return http.ErrServerClosed
	})
	g.Go(func(ctx context.Context) error { return boom })
	ran := false
	err := g.Wait(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), func(context.Context) { ran = true })
	if !errors.Is(err, boom) {
		t.Fatalf("Wait = %v, want %v", err, boom)
	}
	if !ran {
		t.Fatal("the shutdown step did not run after a failure")
	}
}

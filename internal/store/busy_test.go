package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestWriteOutlastsBusyTimeout: a registration through one SQLite handle
// while another handle (another process, such as `weft admin` beside the
// server) holds the write lock past the first one's busy timeout does not
// fail with SQLITE_BUSY: the transaction runs again and succeeds once the
// lock is free. The hook that sees the retry holds it until the lock is
// released, so no timing decides the outcome.
func TestWriteOutlastsBusyTimeout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.user("alice")
	secret := f.key(AuthKeyRequest{User: "alice"})
	a, err := openSQLite(ctx, f.where, Options{Now: f.clock.Now, busyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	retried := make(chan error, 1)
	released := make(chan struct{})
	var once sync.Once
	a.retrying = func(err error) {
		once.Do(func() {
			retried <- err
			<-released
		})
	}

	// The other handle's write transaction: BEGIN IMMEDIATE holds the lock.
	hold, err := f.s.(*sqlStore).db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.Register(ctx, newMachine().req(secret, "late"))
		done <- err
	}()
	select {
	case err := <-retried:
		if !sqliteRetryable(err) {
			t.Errorf("retried after %v, which is not SQLite's lock error", err)
		}
	case err := <-done:
		hold.Rollback()
		t.Fatalf("Register returned %v while another handle held the write lock, without trying again", err)
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	close(released)
	if err := <-done; err != nil {
		t.Fatalf("Register after the lock was released: %v", err)
	}
	if nodes, err := f.s.ListNodes(ctx); err != nil || len(nodes) != 1 {
		t.Fatalf("nodes after the retried registration: %d, %v; want 1", len(nodes), err)
	}
}

func TestSQLiteRetryable(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"SQLITE_BUSY", fmt.Errorf("begin: %w", codedErr(5)), true},
		{"SQLITE_BUSY_SNAPSHOT", codedErr(5 | 2<<8), true},
		{"SQLITE_LOCKED", codedErr(6), true},
		{"SQLITE_LOCKED_SHAREDCACHE", codedErr(6 | 1<<8), true},
		{"SQLITE_FULL", codedErr(13), false},
		{"SQLITE_CONSTRAINT_UNIQUE", codedErr(19 | 8<<8), false},
		{"not SQLite's", errors.New("database is locked"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := sqliteRetryable(tt.err); got != tt.want {
				t.Errorf("sqliteRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

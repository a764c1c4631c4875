package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"weft/internal/key"
)

// TestNodeLogins: a login started through one handle is listed, approved
// through another (as at a second server on the database), approved once
// only, and taken by the waiting node's poll hash exactly once, for a
// one-off key of the approving user that registers a node; bounds on
// waiting logins hold; an expired login can be neither approved nor taken
// and is dropped.
func TestNodeLogins(t *testing.T) { forEachStore(t, testNodeLogins) }

func testNodeLogins(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	other := f.second()
	start := func(s Store, code, remote string) (NodeLogin, error) {
		return s.StartNodeLogin(ctx, NodeLoginStart{Code: code, PollHash: "poll-" + code, Hostname: "host-" + code,
			Remote: remote, Expires: f.clock.Now().Add(10 * time.Minute), MaxPending: 5, MaxPerRemote: 2})
	}
	if _, err := f.s.StartNodeLogin(ctx, NodeLoginStart{Code: "x", PollHash: "y", Expires: f.clock.Now()}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("login expiring now: %v; want ErrInvalid", err)
	}
	if _, err := start(f.s, "c1", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	if _, err := start(other, "c2", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := start(f.s, "c3", "192.0.2.1"); !errors.Is(err, ErrTooManyLogins) {
		t.Fatalf("third login from one address: %v; want ErrTooManyLogins", err)
	}
	for i := range 3 {
		if _, err := start(f.s, fmt.Sprint("d", i), fmt.Sprint("192.0.2.", 10+i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := start(f.s, "d9", "192.0.2.99"); !errors.Is(err, ErrTooManyLogins) {
		t.Fatalf("sixth login: %v; want ErrTooManyLogins", err)
	}
	ls, err := other.PendingNodeLogins(ctx)
	if err != nil || len(ls) != 5 || ls[0].Code != "c1" || ls[1].Code != "c2" || ls[0].Hostname != "host-c1" || ls[0].Remote != "192.0.2.1" {
		t.Fatalf("pending at the other handle: %+v %v", ls, err)
	}

	// c1: waits, is approved at the other handle, is taken once.
	g, err := f.s.TakeNodeLogin(ctx, "poll-c1", f.clock.Now().Add(time.Hour))
	if err != nil || g.AuthKey != "" || g.Login.Code != "c1" {
		t.Fatalf("take while waiting: %+v %v; want the login without a key", g, err)
	}
	if _, err := other.ApproveNodeLogin(ctx, "c1", "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approve as an unknown user: %v", err)
	}
	l, err := other.ApproveNodeLogin(ctx, "c1", "alice")
	if err != nil || l.User != "alice" || l.Code != "c1" {
		t.Fatalf("approve: %+v %v", l, err)
	}
	if _, err := f.s.ApproveNodeLogin(ctx, "c1", "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second approval: %v; want ErrNotFound", err)
	}
	if _, err := f.s.GetNodeLogin(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an approved login is still looked up: %v", err)
	}
	if ls, _ := f.s.PendingNodeLogins(ctx); len(ls) != 4 {
		t.Fatalf("%d pending after an approval; want 4", len(ls))
	}
	g, err = f.s.TakeNodeLogin(ctx, "poll-c1", f.clock.Now().Add(time.Hour))
	if err != nil || g.AuthKey == "" || g.Login.User != "alice" {
		t.Fatalf("take after approval: %+v %v", g, err)
	}
	if _, err := other.TakeNodeLogin(ctx, "poll-c1", f.clock.Now().Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second take: %v; want ErrNotFound", err)
	}
	n, err := f.s.Register(ctx, RegisterRequest{AuthKey: g.AuthKey, MachineKey: key.NewMachine().Public(),
		NodeKey: key.NewNode().Public(), Hostname: "jeju"})
	if err != nil || n.User != "alice" {
		t.Fatalf("registering with the login's key: %+v %v", n, err)
	}
	if _, err := f.s.Register(ctx, RegisterRequest{AuthKey: g.AuthKey, MachineKey: key.NewMachine().Public(),
		NodeKey: key.NewNode().Public(), Hostname: "mokpo"}); !errors.Is(err, ErrKeyUsed) {
		t.Fatalf("the login's key registered twice: %v", err)
	}

	// Expiry: c2 can be neither looked up, approved nor taken, and a new
	// start drops it.
	if _, err := f.s.GetNodeLogin(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	if _, err := f.s.GetNodeLogin(ctx, "c2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired lookup: %v", err)
	}
	if _, err := f.s.ApproveNodeLogin(ctx, "c2", "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired approval: %v", err)
	}
	if _, err := f.s.TakeNodeLogin(ctx, "poll-c2", f.clock.Now().Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired take: %v", err)
	}
	if _, err := start(f.s, "e1", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := f.s.(*sqlStore).direct().QueryRowContext(ctx, `SELECT COUNT(*) FROM node_logins`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d rows after a start past every expiry (%v); want 1", rows, err)
	}
}

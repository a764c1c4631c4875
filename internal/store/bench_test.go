package store

import (
	"context"
	"testing"
	"time"
)

// BenchmarkRegister measures one registration (key check, name, addresses,
// insert, fsync) against a growing database.
func BenchmarkRegister(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	if _, err := f.s.CreateUser(ctx, "alice"); err != nil {
		b.Fatal(err)
	}
	k, _, err := f.s.CreateAuthKey(ctx, AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.s.Register(ctx, newMachine().req(k, "sim")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateNodeRuntime measures the control server's most frequent
// write: a node's endpoints or last-seen time.
func BenchmarkUpdateNodeRuntime(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	if _, err := f.s.CreateUser(ctx, "alice"); err != nil {
		b.Fatal(err)
	}
	k, _, _ := f.s.CreateAuthKey(ctx, AuthKeyRequest{User: "alice"})
	n, err := f.s.Register(ctx, newMachine().req(k, "sim"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.s.UpdateNodeRuntime(ctx, n.ID, func(r *NodeRuntime) { r.LastSeen = time.Now() }); err != nil {
			b.Fatal(err)
		}
	}
}

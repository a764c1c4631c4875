package adminapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tstest/storetest"
	"weft/internal/wire"
)

// fakeHealth is a HealthSource with fixed samples for every node.
type fakeHealth []wire.HealthSample

func (f fakeHealth) Since(_ wire.NodeID, t time.Time) ([]wire.HealthSample, error) {
	var out []wire.HealthSample
	for _, s := range f {
		if !s.Time.Before(t) {
			out = append(out, s)
		}
	}
	return out, nil
}

// TestHandlerClient: the in-process client reaches the same endpoints as
// the socket client (errors unwrap to the store's sentinels, notifications
// fire), and health samples come back raw, oldest first, bounded by since.
func TestHandlerClient(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "", store.Options{})
	now := time.Now()
	health := fakeHealth{
		{Time: now.Add(-3 * time.Hour), Metrics: map[string]float64{"battery_pct": 90}},
		{Time: now.Add(-time.Hour), Metrics: map[string]float64{"battery_pct": 80}},
	}
	rec := &recorder{}
	c := NewHandlerClient((&Server{Store: st, Notifier: rec, Health: health}).Handler())
	if _, err := c.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateUser(ctx, "alice"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	kr, err := c.CreateKey(ctx, KeyRequest{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.Register(ctx, store.RegisterRequest{AuthKey: kr.Key, MachineKey: key.NewMachine().Public(),
		NodeKey: key.NewNode().Public(), Hostname: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RenameNode(ctx, n.Name, "renamed"); err != nil {
		t.Fatal(err)
	}
	if changed, _ := rec.take(); len(changed) != 1 || changed[0] != n.ID {
		t.Fatalf("notified %v, want [%d]", changed, n.ID)
	}
	if _, err := c.GetNode(ctx, "nosuch"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get nosuch: %v, want ErrNotFound", err)
	}
	for _, c2 := range []struct {
		since time.Duration
		want  []float64
	}{{0, []float64{90, 80}}, {2 * time.Hour, []float64{80}}} {
		ss, err := c.NodeSamples(ctx, "renamed", c2.since)
		if err != nil {
			t.Fatal(err)
		}
		var got []float64
		for _, s := range ss {
			got = append(got, s.Metrics["battery_pct"])
		}
		if len(got) != len(c2.want) || got[0] != c2.want[0] {
			t.Fatalf("since %v: battery %v, want %v", c2.since, got, c2.want)
		}
	}
	if _, err := c.NodeSamples(ctx, "nosuch", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("samples of nosuch: %v", err)
	}
}

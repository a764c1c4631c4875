package controlclient

import (
	"slices"
	"testing"
	"time"

	"weft/internal/wire"
)

func TestNetMapLive(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return now.Add(d) }
	tests := []struct {
		name     string
		offset   time.Duration // server clock minus local
		self     time.Time
		peers    map[wire.NodeID]time.Time
		wantIDs  []wire.NodeID
		wantNext time.Time
		selfExp  bool
	}{
		{"nothing expires", 0, time.Time{}, map[wire.NodeID]time.Time{1: {}, 2: {}}, []wire.NodeID{1, 2}, time.Time{}, false},
		{"expired peer dropped", 0, time.Time{}, map[wire.NodeID]time.Time{1: at(-time.Second), 2: at(time.Hour)}, []wire.NodeID{2}, at(time.Hour), false},
		{"expiry exactly now counts", 0, time.Time{}, map[wire.NodeID]time.Time{1: now}, nil, time.Time{}, false},
		// The local clock is an hour slow: on the server's clock peer 1
		// expired 30 minutes ago, though the local clock says it has 30
		// minutes left.
		{"slow local clock", time.Hour, time.Time{}, map[wire.NodeID]time.Time{1: at(30 * time.Minute), 2: at(2 * time.Hour)}, []wire.NodeID{2}, at(time.Hour), false},
		{"fast local clock", -time.Hour, time.Time{}, map[wire.NodeID]time.Time{1: at(-30 * time.Minute)}, []wire.NodeID{1}, at(30 * time.Minute), false},
		{"own key next", 0, at(time.Minute), map[wire.NodeID]time.Time{1: at(time.Hour)}, []wire.NodeID{1}, at(time.Minute), false},
		{"own key expired", 0, at(-time.Minute), map[wire.NodeID]time.Time{1: {}}, []wire.NodeID{1}, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nm := &NetMap{Self: &wire.Node{ID: 100, KeyExpiry: tt.self}, Peers: map[wire.NodeID]*wire.Node{}, ClockOffset: tt.offset}
			for id, exp := range tt.peers {
				nm.Peers[id] = &wire.Node{ID: id, KeyExpiry: exp}
			}
			live, next := nm.Live(now)
			var ids []wire.NodeID
			for id := range live.Peers {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			if !slices.Equal(ids, tt.wantIDs) || !next.Equal(tt.wantNext) {
				t.Errorf("Live = %v next %v, want %v next %v", ids, next, tt.wantIDs, tt.wantNext)
			}
			if len(nm.Peers) != len(tt.peers) {
				t.Error("Live changed the map it was given")
			}
			if got, _ := nm.SelfExpired(now); got != tt.selfExp {
				t.Errorf("SelfExpired = %v, want %v", got, tt.selfExp)
			}
		})
	}
}

package controlclient

import (
	"net/netip"
	"testing"
	"time"

	"weft/internal/wire"
)

func TestNetMapApply(t *testing.T) {
	on, off := true, false
	eps := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:1")}
	region := 3
	seen := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	full := &wire.MapResponse{Seq: 5, Full: true, Self: &wire.Node{ID: 1, Name: "me"},
		Peers: []*wire.Node{{ID: 2, Name: "b", Online: true}, {ID: 3, Name: "c"}}}
	tests := []struct {
		name  string
		delta *wire.MapResponse
		check func(t *testing.T, nm *NetMap)
	}{
		{"patch endpoints and region", &wire.MapResponse{Seq: 6, PeersPatched: []*wire.PeerPatch{{ID: 2, Endpoints: &eps, HomeRegion: &region}}},
			func(t *testing.T, nm *NetMap) {
				if p := nm.Peers[2]; len(p.Endpoints) != 1 || p.HomeRegion != 3 || !p.Online {
					t.Errorf("peer 2 = %+v", p)
				}
			}},
		{"offline with last seen", &wire.MapResponse{Seq: 6, PeersPatched: []*wire.PeerPatch{{ID: 2, Online: &off, LastSeen: &seen}}},
			func(t *testing.T, nm *NetMap) {
				if p := nm.Peers[2]; p.Online || !p.LastSeen.Equal(seen) {
					t.Errorf("peer 2 = %+v", p)
				}
			}},
		{"added and removed", &wire.MapResponse{Seq: 6, PeersChanged: []*wire.Node{{ID: 4, Name: "d"}}, PeersRemoved: []wire.NodeID{3}},
			func(t *testing.T, nm *NetMap) {
				if len(nm.Peers) != 2 || nm.Peers[4] == nil || nm.Peers[3] != nil {
					t.Errorf("peers = %v", nm.Peers)
				}
			}},
		{"patch for unknown peer ignored", &wire.MapResponse{Seq: 6, PeersPatched: []*wire.PeerPatch{{ID: 9, Online: &on}}},
			func(t *testing.T, nm *NetMap) {
				if len(nm.Peers) != 2 {
					t.Errorf("peers = %v", nm.Peers)
				}
			}},
		{"self replaced", &wire.MapResponse{Seq: 6, Self: &wire.Node{ID: 1, Name: "renamed"}},
			func(t *testing.T, nm *NetMap) {
				if nm.Self.Name != "renamed" {
					t.Errorf("self = %+v", nm.Self)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nm := &NetMap{}
			nm.Apply(full)
			before := nm.Clone()
			nm.Apply(tt.delta)
			nm.Apply(tt.delta) // deltas are idempotent
			tt.check(t, nm)
			if nm.Seq != 6 {
				t.Errorf("seq = %d", nm.Seq)
			}
			// A clone taken before is untouched.
			if len(before.Peers) != 2 || !before.Peers[2].Online || before.Peers[2].HomeRegion != 0 || before.Self.Name != "me" {
				t.Errorf("clone changed: %+v", before.Peers[2])
			}
		})
	}
}

// FuzzApplyMapResponse feeds arbitrary server messages through the node's
// decoder and Apply: whatever the server sends, the node must not crash.
func FuzzApplyMapResponse(f *testing.F) {
	f.Add([]byte(`{"seq":1,"full":true,"self":{"id":1},"peers":[{"id":2}]}`))
	f.Add([]byte(`{"seq":2,"peers_patched":[{"id":2,"online":true,"endpoints":["192.0.2.1:1"]}],"peers_removed":[2]}`))
	f.Add([]byte(`{"peers_changed":[null]}`))
	f.Add([]byte(`{"relay_map":{"regions":{"1":null}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r wire.MapResponse
		if wire.Decode(b, &r) != nil {
			return
		}
		nm := &NetMap{}
		nm.Apply(&r)
		nm.Apply(&r)
		nm.Clone().SortedPeers()
	})
}

package controlclient

import (
	"cmp"
	"encoding/json"
	"slices"

	"weft/internal/wire"
)

// NetMap is a node's current view of the tailnet, built from a full map
// and the deltas after it.
type NetMap struct {
	Seq          uint64                     `json:"seq"`
	Self         *wire.Node                 `json:"self"`
	Peers        map[wire.NodeID]*wire.Node `json:"peers"`
	RelayMap     *wire.RelayMap             `json:"relay_map,omitempty"`
	DNS          *wire.DNSConfig            `json:"dns,omitempty"`
	PacketFilter json.RawMessage            `json:"packet_filter,omitempty"`
}

// Apply folds one map message into nm. A full map replaces everything;
// a delta changes only what it names. Deltas are idempotent, and a patch
// or removal for an unknown peer is ignored.
func (nm *NetMap) Apply(r *wire.MapResponse) {
	// A full map starts a stream, possibly from a restarted server
	// whose counter began again.
	if r.Seq > nm.Seq || r.Full {
		nm.Seq = r.Seq
	}
	if r.Full {
		nm.Peers = make(map[wire.NodeID]*wire.Node, len(r.Peers))
		for _, p := range r.Peers {
			nm.Peers[p.ID] = p
		}
	}
	if nm.Peers == nil {
		nm.Peers = map[wire.NodeID]*wire.Node{}
	}
	if r.Self != nil {
		nm.Self = r.Self
	}
	if r.RelayMap != nil {
		nm.RelayMap = r.RelayMap
	}
	if r.DNS != nil {
		nm.DNS = r.DNS
	}
	if r.PacketFilter != nil {
		nm.PacketFilter = r.PacketFilter
	}
	for _, p := range r.PeersChanged {
		nm.Peers[p.ID] = p
	}
	for _, id := range r.PeersRemoved {
		delete(nm.Peers, id)
	}
	for _, pp := range r.PeersPatched {
		old, ok := nm.Peers[pp.ID]
		if !ok {
			continue
		}
		// Copy on write: NetMaps handed out by Clone share peer records.
		n := *old
		if pp.Online != nil {
			n.Online = *pp.Online
		}
		if pp.LastSeen != nil {
			n.LastSeen = *pp.LastSeen
		}
		if pp.Endpoints != nil {
			n.Endpoints = *pp.Endpoints
		}
		if pp.HomeRegion != nil {
			n.HomeRegion = *pp.HomeRegion
		}
		if pp.DiscoKey != nil {
			n.DiscoKey = *pp.DiscoKey
		}
		nm.Peers[pp.ID] = &n
	}
}

// Clone returns a copy of nm that later Applies to nm do not change. Peer
// records are shared: Apply never modifies a record in place.
func (nm *NetMap) Clone() *NetMap {
	if nm == nil {
		return nil
	}
	c := *nm
	c.Peers = make(map[wire.NodeID]*wire.Node, len(nm.Peers))
	for id, p := range nm.Peers {
		c.Peers[id] = p
	}
	return &c
}

// SortedPeers returns the peers ordered by name.
func (nm *NetMap) SortedPeers() []*wire.Node {
	out := make([]*wire.Node, 0, len(nm.Peers))
	for _, p := range nm.Peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *wire.Node) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out
}

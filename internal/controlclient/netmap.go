package controlclient

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

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
	PacketFilter *wire.PacketFilter         `json:"packet_filter,omitempty"`
	// ClockOffset is the server's clock minus this node's, measured when
	// the last full map arrived (see ServerNow). It is saved with the map
	// so that a node restarted while control is down still judges key
	// expiry on the server's time.
	ClockOffset time.Duration `json:"clock_offset,omitempty"`
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
		if pp.Hostinfo != nil {
			n.Hostinfo = pp.Hostinfo
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

// Why an exit node cannot be used, for callers that react to it; the
// errors wrapping them say what to do.
var (
	ErrExitNodeNotFound  = errors.New("no such exit node")
	ErrNotAnExitNode     = errors.New("not an exit node")
	ErrExitNodeOffline   = errors.New("exit node offline")
	ErrExitNodeIsSelf    = errors.New("exit node is this node")
	ErrExitNodeNeedsAMap = errors.New("no peer map yet")
)

// ResolveExitNode finds the exit node a user named, by node name or by a
// tailnet address, in nm. The peer must offer an approved exit route (its
// Routes hold a default route); being online is not required here, since
// a selected exit node that goes offline stays selected (traffic waits for
// it rather than leaking around it).
func ResolveExitNode(nm *NetMap, name string) (*wire.Node, error) {
	if nm == nil || nm.Self == nil {
		return nil, fmt.Errorf("%w: the node has not received its peer map yet; wait for `weft status` to show the peers and try again", ErrExitNodeNeedsAMap)
	}
	if nm.Self.Matches(name) {
		return nil, fmt.Errorf("%w: %q is this node; choose a peer as exit node", ErrExitNodeIsSelf, name)
	}
	for _, n := range nm.SortedPeers() {
		if n.Matches(name) {
			return offersExit(n)
		}
	}
	return nil, fmt.Errorf("%w: no peer in the tailnet is named or has the address %q; `weft exit-node list` shows the exit nodes", ErrExitNodeNotFound, name)
}

// ExitNodeByID is ResolveExitNode for a choice already stored by the
// peer's stable node ID, so that renaming the exit node keeps it. name is
// the name it had when last seen, for the error when it is gone.
func ExitNodeByID(nm *NetMap, id wire.NodeID, name string) (*wire.Node, error) {
	if nm == nil || nm.Self == nil {
		return nil, fmt.Errorf("%w: the node has not received its peer map yet; wait for `weft status` to show the peers and try again", ErrExitNodeNeedsAMap)
	}
	if nm.Self.ID == id {
		return nil, fmt.Errorf("%w: the chosen exit node (node %d) is this node; choose a peer as exit node", ErrExitNodeIsSelf, id)
	}
	if n := nm.Peers[id]; n != nil {
		return offersExit(n)
	}
	return nil, fmt.Errorf("%w: the chosen exit node %s (node %d) is no longer in the tailnet; `weft exit-node list` shows the exit nodes", ErrExitNodeNotFound, name, id)
}

// offersExit returns n if an administrator approved its exit routes.
func offersExit(n *wire.Node) (*wire.Node, error) {
	if !n.OffersExit() {
		return nil, fmt.Errorf("%w: %s does not offer itself as an exit node, or an administrator has not approved it yet: "+
			"run `weft set --advertise-exit-node` on %s, then `weft admin routes approve %s exit` on the server", ErrNotAnExitNode, n.Name, n.Name, n.Name)
	}
	return n, nil
}

package control

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"weft/internal/changefeed"
	"weft/internal/store"
	"weft/internal/wire"
)

// samePrefixSet reports whether a and b hold the same prefixes, in any
// order and counting duplicates once.
func samePrefixSet(a, b []netip.Prefix) bool {
	norm := func(ps []netip.Prefix) []netip.Prefix {
		out := slices.Clone(ps)
		slices.SortFunc(out, func(x, y netip.Prefix) int {
			if c := x.Addr().Compare(y.Addr()); c != 0 {
				return c
			}
			return x.Bits() - y.Bits()
		})
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

// setAdvertised records the routes node n offers when they differ from
// what the store holds, and returns the node as stored afterwards. It
// writes to the store only on a change, so a reconnecting node costs no
// write here. Peers see only enabled routes (advertised and approved):
// store.Node.Wire puts just those in wire.Node.Routes and AllowedIPs.
func (s *Server) setAdvertised(ctx context.Context, n store.Node, routes []netip.Prefix) (store.Node, bool, error) {
	if samePrefixSet(n.AdvertisedRoutes, routes) {
		return n, false, nil
	}
	updated, err := s.cfg.Store.SetAdvertisedRoutes(ctx, n.ID, routes)
	if err != nil {
		return n, false, fmt.Errorf("control: recording advertised routes of node %d: %w", n.ID, err)
	}
	s.out.nodes(changefeed.KindNode, n.ID)
	s.autoApprove(ctx, s.m.currentPolicy(), &updated)
	s.log.Info("node advertises routes", "node", n.ID, "name", n.Name, "routes", routes, "enabled", updated.EnabledRoutes())
	return updated, true, nil
}

// updateAdvertised handles the routes of an Update from node id during its
// stream: stored, and when that changes what peers may use, sent to them
// as the node's new record (its own map gets the new self).
func (s *Server) updateAdvertised(ctx context.Context, id wire.NodeID, routes []netip.Prefix) error {
	n, err := s.cfg.Store.GetNode(ctx, id)
	if err != nil {
		return fmt.Errorf("control: loading node %d: %w", id, err)
	}
	updated, changed, err := s.setAdvertised(ctx, n, routes)
	if err != nil || !changed {
		return err
	}
	s.m.upsert(&updated)
	return nil
}

package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"weft/internal/tailnet"
	"weft/internal/wire"
)

// ValidatePrefix checks a route prefix as the node does (tailnet.CheckRoute):
// valid, canonical (so that "10.0.0.1/24" is caught rather than silently
// widened) and outside the tailnet's own range.
func ValidatePrefix(p netip.Prefix) error {
	if err := tailnet.CheckRoute(p); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// loadRoutes returns the routes of node id, or of all nodes when id is 0,
// ordered by node ID and prefix.
func loadRoutes(ctx context.Context, tx *dbTx, id wire.NodeID) ([]Route, error) {
	if id != 0 {
		return queryRoutes(ctx, tx, ` WHERE r.node_id = ?`, id)
	}
	return queryRoutes(ctx, tx, "")
}

// loadNodesRoutes returns the routes of nodes (and maybe of others): by
// ID range when their IDs are dense in it (a list in ID order), else by
// their IDs alone (a sorted page, whose IDs can span the whole tailnet).
func loadNodesRoutes(ctx context.Context, tx *dbTx, nodes []Node) ([]Route, error) {
	lo, hi := nodes[0].ID, nodes[0].ID
	ids := make([]wire.NodeID, len(nodes))
	for i, n := range nodes {
		lo, hi = min(lo, n.ID), max(hi, n.ID)
		ids[i] = n.ID
	}
	if int64(hi-lo) < 2*int64(len(nodes)) {
		return queryRoutes(ctx, tx, ` WHERE r.node_id >= ? AND r.node_id <= ?`, lo, hi)
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	return queryRoutes(ctx, tx, ` WHERE r.node_id IN (`+tx.d.idList+`)`, string(b))
}

func queryRoutes(ctx context.Context, tx *dbTx, where string, args ...any) ([]Route, error) {
	q := `SELECT r.node_id, n.name, r.prefix, r.advertised, r.approved, r.auto_approved_by FROM routes r JOIN nodes n ON n.id = r.node_id` + where
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Route
	for rows.Next() {
		var r Route
		var p string
		if err := rows.Scan(&r.NodeID, &r.NodeName, &p, &r.Advertised, &r.Approved, &r.AutoApprovedBy); err != nil {
			return nil, err
		}
		if r.Prefix, err = netip.ParsePrefix(p); err != nil {
			return nil, fmt.Errorf("node %d: corrupt route %q: %w", r.NodeID, p, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := cmp.Compare(a.NodeID, b.NodeID); c != 0 {
			return c
		}
		return comparePrefix(a.Prefix, b.Prefix)
	})
	return out, nil
}

// comparePrefix orders IPv4 before IPv6, then by address, then shorter
// prefixes first.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// setRoutes fills the node's route lists from its rows.
func (n *Node) setRoutes(rs []Route) {
	n.AdvertisedRoutes, n.ApprovedRoutes = nil, nil
	for _, r := range rs {
		if r.Advertised {
			n.AdvertisedRoutes = append(n.AdvertisedRoutes, r.Prefix)
		}
		if r.Approved {
			n.ApprovedRoutes = append(n.ApprovedRoutes, r.Prefix)
		}
	}
}

func (s *sqlStore) SetAdvertisedRoutes(ctx context.Context, id wire.NodeID, prefixes []netip.Prefix) (Node, error) {
	for _, p := range prefixes {
		if err := ValidatePrefix(p); err != nil {
			return Node{}, fmt.Errorf("store: SetAdvertisedRoutes: %w", err)
		}
	}
	return s.updateNode(ctx, "SetAdvertisedRoutes", id, func(tx *dbTx, n *Node) error {
		if _, err := tx.ExecContext(ctx, `UPDATE routes SET advertised = FALSE WHERE node_id = ?`, id); err != nil {
			return err
		}
		for _, p := range prefixes {
			if _, err := tx.ExecContext(ctx, `INSERT INTO routes (node_id, prefix, advertised, approved)
				VALUES (?, ?, TRUE, FALSE) ON CONFLICT (node_id, prefix) DO UPDATE SET advertised = TRUE`,
				id, p.String()); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM routes WHERE node_id = ? AND NOT advertised AND NOT approved`, id)
		return err
	})
}

func (s *sqlStore) ApproveRoute(ctx context.Context, id wire.NodeID, ps ...netip.Prefix) (Node, error) {
	if err := validatePrefixes(ps); err != nil {
		return Node{}, fmt.Errorf("store: ApproveRoute: %w", err)
	}
	return s.updateNode(ctx, "ApproveRoute", id, func(tx *dbTx, n *Node) error {
		for _, p := range ps {
			if !slices.Contains(n.AdvertisedRoutes, p) {
				return fmt.Errorf("%w: node %q does not advertise %v", ErrNotFound, n.Name, p)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE routes SET approved = TRUE, auto_approved_by = '' WHERE node_id = ? AND prefix = ?`, id, p.String()); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sqlStore) RejectRoute(ctx context.Context, id wire.NodeID, ps ...netip.Prefix) (Node, error) {
	if err := validatePrefixes(ps); err != nil {
		return Node{}, fmt.Errorf("store: RejectRoute: %w", err)
	}
	return s.updateNode(ctx, "RejectRoute", id, func(tx *dbTx, n *Node) error {
		for _, p := range ps {
			if !slices.Contains(n.AdvertisedRoutes, p) && !slices.Contains(n.ApprovedRoutes, p) {
				return fmt.Errorf("%w: node %q neither advertises nor has approved %v", ErrNotFound, n.Name, p)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE routes SET approved = FALSE, auto_approved_by = '' WHERE node_id = ? AND prefix = ?`, id, p.String()); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM routes WHERE node_id = ? AND NOT advertised AND NOT approved`, id)
		return err
	})
}

// validatePrefixes checks each of ps; none at all is invalid.
func validatePrefixes(ps []netip.Prefix) error {
	if len(ps) == 0 {
		return fmt.Errorf("%w: no prefix given", ErrInvalid)
	}
	for _, p := range ps {
		if err := ValidatePrefix(p); err != nil {
			return err
		}
	}
	return nil
}

// ListNodeRoutes reads the routes of node id alone, by the routes
// table's (node_id, prefix) key, so a page about one node does not read
// the tailnet's every route.
func (s *sqlStore) ListNodeRoutes(ctx context.Context, id wire.NodeID) ([]Route, error) {
	if id == 0 {
		return nil, fmt.Errorf("store: ListNodeRoutes: %w: no node ID", ErrInvalid)
	}
	var rs []Route
	err := s.read(ctx, func(tx *dbTx) error {
		var err error
		rs, err = loadRoutes(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: ListNodeRoutes: %w", err)
	}
	return rs, nil
}

func (s *sqlStore) ListRoutes(ctx context.Context) ([]Route, error) {
	var rs []Route
	err := s.read(ctx, func(tx *dbTx) error {
		var err error
		rs, err = loadRoutes(ctx, tx, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: ListRoutes: %w", err)
	}
	return rs, nil
}

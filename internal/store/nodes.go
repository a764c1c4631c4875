package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"weft/internal/key"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

const nodeColumns = `n.id, n.name, COALESCE(u.name, ''), n.tags, n.machine_key, n.node_key, n.disco_key,
	n.key_expiry, n.ephemeral, COALESCE(k.prefix, ''), n.ipv4, n.ipv6, n.hostname, n.os,
	n.endpoints, n.home_region, n.hostinfo, n.last_seen, n.created_at
	FROM nodes n LEFT JOIN users u ON u.id = n.user_id LEFT JOIN auth_keys k ON k.id = n.auth_key_id`

func scanNode(sc interface{ Scan(...any) error }) (Node, error) {
	var n Node
	var tags, mk, nk, dk, v4, v6, eps, hi string
	var expiry, lastSeen, created int64
	err := sc.Scan(&n.ID, &n.Name, &n.User, &tags, &mk, &nk, &dk, &expiry, &n.Ephemeral, &n.AuthKey,
		&v4, &v6, &n.Hostname, &n.OS, &eps, &n.HomeRegion, &hi, &lastSeen, &created)
	if err != nil {
		return n, err
	}
	n.Tags = splitTags(tags)
	n.KeyExpiry, n.LastSeen, n.CreatedAt = fromDB(expiry), fromDB(lastSeen), fromDB(created)
	// The stored text was written by MarshalText and parses back; a
	// failure here means a corrupt row, reported rather than hidden.
	if err := errors.Join(
		n.MachineKey.UnmarshalText([]byte(mk)),
		n.NodeKey.UnmarshalText([]byte(nk)),
		n.DiscoKey.UnmarshalText([]byte(dk)),
		n.IPv4.UnmarshalText([]byte(v4)),
		n.IPv6.UnmarshalText([]byte(v6)),
	); err != nil {
		return n, fmt.Errorf("node %d: corrupt row: %w", n.ID, err)
	}
	if eps != "" {
		if err := json.Unmarshal([]byte(eps), &n.Endpoints); err != nil {
			return n, fmt.Errorf("node %d: corrupt endpoints: %w", n.ID, err)
		}
	}
	if hi != "" {
		n.Hostinfo = new(wire.Hostinfo)
		if err := json.Unmarshal([]byte(hi), n.Hostinfo); err != nil {
			return n, fmt.Errorf("node %d: corrupt hostinfo: %w", n.ID, err)
		}
	}
	return n, nil
}

// getNodeWhere loads the one node matching cond (a condition on n) with its
// routes.
func getNodeWhere(ctx context.Context, tx *dbTx, cond string, arg any) (Node, error) {
	n, err := scanNode(tx.QueryRowContext(ctx, `SELECT `+nodeColumns+` WHERE `+cond, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, ErrNotFound
	}
	if err != nil {
		return Node{}, err
	}
	rs, err := loadRoutes(ctx, tx, n.ID)
	if err != nil {
		return Node{}, err
	}
	n.setRoutes(rs)
	return n, nil
}

func getNode(ctx context.Context, tx *dbTx, id wire.NodeID) (Node, error) {
	n, err := getNodeWhere(ctx, tx, `n.id = ?`, id)
	if errors.Is(err, ErrNotFound) {
		return n, fmt.Errorf("%w: no node with ID %d", ErrNotFound, id)
	}
	return n, err
}

func (s *sqlStore) getBy(ctx context.Context, op, cond string, arg any, what string) (Node, error) {
	var n Node
	err := s.read(ctx, func(tx *dbTx) error {
		var err error
		n, err = getNodeWhere(ctx, tx, cond, arg)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: no node with %s", ErrNotFound, what)
		}
		return err
	})
	if err != nil {
		return Node{}, fmt.Errorf("store: %s: %w", op, err)
	}
	return n, nil
}

func (s *sqlStore) GetNode(ctx context.Context, id wire.NodeID) (Node, error) {
	return s.getBy(ctx, "GetNode", `n.id = ?`, id, fmt.Sprintf("ID %d", id))
}

// getNodesChunk is how many IDs one query of GetNodes names (as one
// JSON parameter, the dialect's idList), so that no single query grows
// with the burst. A variable so that a test can cross chunks with few
// nodes.
var getNodesChunk = 1000

func (s *sqlStore) GetNodes(ctx context.Context, ids []wire.NodeID) ([]Node, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	if len(ids) == 0 {
		return nil, nil
	}
	nodes := make([]Node, 0, len(ids))
	err := s.read(ctx, func(tx *dbTx) error {
		for chunk := range slices.Chunk(ids, getNodesChunk) {
			list, err := json.Marshal(chunk)
			if err != nil {
				return err
			}
			got, err := queryNodes(ctx, tx, ` WHERE n.id IN (`+tx.d.idList+`) ORDER BY n.id`, string(list))
			if err != nil {
				return err
			}
			nodes = append(nodes, got...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: GetNodes (%d IDs): %w", len(ids), err)
	}
	return nodes, nil
}

func (s *sqlStore) GetNodeByName(ctx context.Context, name string) (Node, error) {
	return s.getBy(ctx, "GetNodeByName", `n.name = ?`, name, fmt.Sprintf("name %q", name))
}

func (s *sqlStore) GetNodeByMachineKey(ctx context.Context, mk key.MachinePublic) (Node, error) {
	return s.getBy(ctx, "GetNodeByMachineKey", `n.machine_key = ?`, mk.String(), "machine key "+mk.ShortString())
}

func (s *sqlStore) GetNodeByNodeKey(ctx context.Context, nk key.NodePublic) (Node, error) {
	return s.getBy(ctx, "GetNodeByNodeKey", `n.node_key = ?`, nk.String(), "node key "+nk.ShortString())
}

func (s *sqlStore) ListNodes(ctx context.Context) ([]Node, error) {
	var nodes []Node
	err := s.read(ctx, func(tx *dbTx) error {
		var err error
		nodes, err = queryNodes(ctx, tx, ` ORDER BY n.id`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: ListNodes: %w", err)
	}
	return nodes, nil
}

// queryNodes returns the nodes that SELECT nodeColumns + tail finds, in
// its order, each with its routes.
func queryNodes(ctx context.Context, tx *dbTx, tail string, args ...any) ([]Node, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+nodeColumns+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var nodes []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil || len(nodes) == 0 {
		return nodes, err
	}
	rs, err := loadNodesRoutes(ctx, tx, nodes)
	if err != nil {
		return nil, err
	}
	byNode := make(map[wire.NodeID][]Route)
	for _, r := range rs {
		byNode[r.NodeID] = append(byNode[r.NodeID], r)
	}
	for i := range nodes {
		nodes[i].setRoutes(byNode[nodes[i].ID])
	}
	return nodes, nil
}

func (s *sqlStore) Register(ctx context.Context, req RegisterRequest) (Node, error) {
	r, err := s.newRegistration(req)
	if err != nil {
		return Node{}, fmt.Errorf("store: Register: %w", err)
	}
	var n Node
	err = s.write(ctx, func(tx *dbTx) error {
		k, existing, known, err := r.useAuthKey(ctx, tx)
		if err != nil {
			return err
		}
		if err := r.checkNodeKeyFree(ctx, tx); err != nil {
			return err
		}
		var id wire.NodeID
		if known {
			id = existing.ID
			err = r.update(ctx, tx, k, id)
		} else {
			id, err = s.insertRegistered(ctx, tx, r, k)
		}
		if err != nil {
			return err
		}
		n, err = getNode(ctx, tx, id)
		return err
	})
	if err != nil {
		return Node{}, fmt.Errorf("store: Register: %w", err)
	}
	return n, nil
}

// registration is a checked RegisterRequest with what Register derives
// from it before its transaction: the key lifetime, the names and the
// encoded hostinfo.
type registration struct {
	req      RegisterRequest
	lifetime time.Duration
	hostname string
	osName   string
	hostinfo string // JSON, or "" for none
	now      time.Time
}

// newRegistration checks req and derives what the transaction writes.
func (s *sqlStore) newRegistration(req RegisterRequest) (*registration, error) {
	if req.MachineKey.IsZero() || req.NodeKey.IsZero() {
		return nil, fmt.Errorf("%w: machine key and node key are required", ErrInvalid)
	}
	if req.KeyLifetime < 0 {
		return nil, fmt.Errorf("%w: negative key lifetime", ErrInvalid)
	}
	r := &registration{req: req, lifetime: req.KeyLifetime, hostname: req.Hostname, now: fromDB(toDB(s.now()))}
	if r.lifetime == 0 {
		r.lifetime = DefaultNodeKeyLifetime
	}
	if req.Hostinfo != nil {
		if r.hostname == "" {
			r.hostname = req.Hostinfo.Hostname
		}
		r.osName = req.Hostinfo.OS
	}
	hostinfo, err := marshalOpt(req.Hostinfo)
	if err != nil {
		return nil, err
	}
	r.hostinfo = hostinfo
	return r, nil
}

// useAuthKey checks the pre-auth key and counts this use of it. It also
// returns the node this machine already has, if any (known).
func (r *registration) useAuthKey(ctx context.Context, tx *dbTx) (k authKeyRow, existing Node, known bool, err error) {
	k, err = lookupAuthKey(ctx, tx, r.req.AuthKey)
	if err != nil {
		return k, existing, false, err
	}
	if k.Expired(r.now) {
		return k, existing, false, fmt.Errorf("%w: key %s expired at %s", ErrKeyExpired, k.Prefix, k.Expiry.Format("2006-01-02 15:04 MST"))
	}
	existing, err = getNodeWhere(ctx, tx, `n.machine_key = ?`, r.req.MachineKey.String())
	known = err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return k, existing, false, err
	}
	if !k.Reusable && k.Uses > 0 {
		// The one machine that used a one-off key may register with it
		// again while its node key is valid: a retry after a lost reply
		// must not lock it out.
		if !known || existing.AuthKey != k.Prefix || existing.KeyExpired(r.now) {
			return k, existing, known, fmt.Errorf("%w: key %s was for one node and has been used", ErrKeyUsed, k.Prefix)
		}
		return k, existing, known, nil
	}
	// The guard repeats the check so that the key is consumed at most
	// once even under a weaker isolation level.
	res, err := tx.ExecContext(ctx, `UPDATE auth_keys SET uses = uses + 1, last_used = ?
		WHERE id = ? AND (reusable OR uses = 0)`, toDB(r.now), k.id)
	if err != nil {
		return k, existing, known, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return k, existing, known, err
	} else if n != 1 {
		return k, existing, known, fmt.Errorf("%w: key %s was for one node and has been used", ErrKeyUsed, k.Prefix)
	}
	return k, existing, known, nil
}

// checkNodeKeyFree refuses a node key that another machine holds.
func (r *registration) checkNodeKeyFree(ctx context.Context, tx *dbTx) error {
	var other wire.NodeID
	err := tx.QueryRowContext(ctx, `SELECT id FROM nodes WHERE node_key = ? AND machine_key <> ?`,
		r.req.NodeKey.String(), r.req.MachineKey.String()).Scan(&other)
	if err == nil {
		return fmt.Errorf("%w: node key %s belongs to node %d", ErrExists, r.req.NodeKey.ShortString(), other)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return nil
}

// owner returns the node's user and key expiry under key k. A tagged node
// belongs to no user and its key never expires (key_expiry 0); an
// untagged one belongs to the key's user.
func (r *registration) owner(ctx context.Context, tx *dbTx, k authKeyRow) (sql.NullInt64, int64, error) {
	if len(k.Tags) > 0 {
		return sql.NullInt64{}, 0, nil
	}
	id, err := userID(ctx, tx, k.User)
	if err != nil {
		return sql.NullInt64{}, 0, err
	}
	return sql.NullInt64{Int64: int64(id), Valid: true}, toDB(r.now.Add(r.lifetime)), nil
}

// update re-registers the known node id under key k, keeping its name and
// addresses.
func (r *registration) update(ctx context.Context, tx *dbTx, k authKeyRow, id wire.NodeID) error {
	uid, expiryDB, err := r.owner(ctx, tx, k)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE nodes SET user_id = ?, tags = ?, node_key = ?, disco_key = ?,
		key_expiry = ?, ephemeral = ?, auth_key_id = ?, hostname = ?, os = ?, hostinfo = ?, last_seen = ?
		WHERE id = ?`,
		uid, strings.Join(k.Tags, ","), r.req.NodeKey.String(), r.req.DiscoKey.String(), expiryDB, k.Ephemeral, k.id,
		r.hostname, r.osName, r.hostinfo, toDB(r.now), id)
	return err
}

// insertRegistered adds a new node under key k with a free name and fresh
// addresses, and returns its ID.
func (s *sqlStore) insertRegistered(ctx context.Context, tx *dbTx, r *registration, k authKeyRow) (wire.NodeID, error) {
	uid, expiryDB, err := r.owner(ctx, tx, k)
	if err != nil {
		return 0, err
	}
	if err := lockAllocation(ctx, tx); err != nil {
		return 0, err
	}
	name, err := freeName(ctx, tx, SanitizeHostname(r.hostname))
	if err != nil {
		return 0, err
	}
	v4, v6, err := s.allocate(ctx, tx)
	if err != nil {
		return 0, err
	}
	var id wire.NodeID
	err = tx.QueryRowContext(ctx, `INSERT INTO nodes (name, user_id, tags, machine_key, node_key, disco_key,
		key_expiry, ephemeral, auth_key_id, ipv4, ipv6, hostname, os, endpoints, home_region, hostinfo,
		last_seen, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', 0, ?, ?, ?) RETURNING id`,
		name, uid, strings.Join(k.Tags, ","), r.req.MachineKey.String(), r.req.NodeKey.String(), r.req.DiscoKey.String(),
		expiryDB, k.Ephemeral, k.id, v4.String(), v6.String(), r.hostname, r.osName, r.hostinfo,
		toDB(r.now), toDB(r.now)).Scan(&id)
	return id, err
}

// lockAllocation makes new nodes' name and address choices one at a time
// across every store sharing the database. It writes the allocation
// cursor's row, which on PostgreSQL holds that row's lock until commit:
// a concurrent registration waits here and then, at READ COMMITTED, sees
// the committed node of the one before it, so it picks another name and
// address instead of failing on a unique constraint. (On SQLite the
// transaction holds the database's write lock already.) The constraints
// stay the guarantee; this only makes races rare and cheap.
func lockAllocation(ctx context.Context, tx *dbTx) error {
	if _, err := tx.ExecContext(ctx, `UPDATE settings SET value = value WHERE name = 'next_v4_index'`); err != nil {
		return fmt.Errorf("lock address allocation: %w", err)
	}
	return nil
}

// freeName returns base or the first of base-2, base-3, ... no node uses.
func freeName(ctx context.Context, tx *dbTx, base string) (string, error) {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM nodes WHERE name = ?`, base).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return base, nil
	} else if err != nil {
		return "", err
	}
	// One index range scan for all candidates: every suffixed name starts
	// with stem + "-", and '.' is the byte after '-'.
	stem := trimForSuffix(base)
	rows, err := tx.QueryContext(ctx, `SELECT name FROM nodes WHERE name >= ? AND name < ?`, stem+"-", stem+".")
	if err != nil {
		return "", err
	}
	defer rows.Close()
	used := map[string]bool{base: true}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return "", err
		}
		used[n] = true
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	return uniqueName(base, func(s string) bool { return used[s] }), nil
}

// trimForSuffix is the part of base every suffixed candidate starts with,
// allowing uniqueName to shorten base for long suffixes.
func trimForSuffix(base string) string {
	if len(base) > maxLabel-12 {
		return strings.TrimRight(base[:maxLabel-12], "-")
	}
	return base
}

// allocate picks the next free IPv4 address after the last one handed
// out, wrapping around, and the IPv6 address derived from it. Walking on
// from the last allocation (rather than taking the lowest free address)
// means a deleted node's address is reused only after the rest of the
// space has been used once.
func (s *sqlStore) allocate(ctx context.Context, tx *dbTx) (netip.Addr, netip.Addr, error) {
	next := uint32(1)
	if v, err := getSetting(ctx, tx, "next_v4_index"); err == nil {
		var n uint32
		if _, err := fmt.Sscan(v, &n); err != nil {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("settings: next_v4_index %q: %w", v, err)
		}
		next = n
	} else if !errors.Is(err, sql.ErrNoRows) {
		return netip.Addr{}, netip.Addr{}, err
	}
	for tries := 0; tries < v4Count; tries++ {
		i := (next + uint32(tries)) % v4Count
		a, ok := v4At(i)
		if !ok {
			continue
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM nodes WHERE ipv4 = ?`, a.String()).Scan(&one)
		if err == nil {
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return netip.Addr{}, netip.Addr{}, err
		}
		if err := putSetting(ctx, tx, "next_v4_index", fmt.Sprint((i+1)%v4Count)); err != nil {
			return netip.Addr{}, netip.Addr{}, err
		}
		return a, v6For(s.ula, a), nil
	}
	return netip.Addr{}, netip.Addr{}, fmt.Errorf("%w: all %d addresses of %v are in use", ErrInvalid, v4Count, tailnet.V4Range)
}

func marshalOpt(v any) (string, error) {
	switch v := v.(type) {
	case *wire.Hostinfo:
		if v == nil {
			return "", nil
		}
	case []netip.AddrPort:
		if len(v) == 0 {
			return "", nil
		}
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// updateNode loads node id, lets fn write its changes in the same
// transaction, and returns the node as stored afterwards.
func (s *sqlStore) updateNode(ctx context.Context, op string, id wire.NodeID, fn func(tx *dbTx, n *Node) error) (Node, error) {
	var n Node
	err := s.write(ctx, func(tx *dbTx) error {
		cur, err := getNode(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := fn(tx, &cur); err != nil {
			return err
		}
		n, err = getNode(ctx, tx, id)
		return err
	})
	if err != nil {
		return Node{}, fmt.Errorf("store: %s: %w", op, err)
	}
	return n, nil
}

func (s *sqlStore) RotateNodeKey(ctx context.Context, id wire.NodeID, nk key.NodePublic) (Node, error) {
	if nk.IsZero() {
		return Node{}, fmt.Errorf("store: RotateNodeKey: %w: zero node key", ErrInvalid)
	}
	return s.updateNode(ctx, "RotateNodeKey", id, func(tx *dbTx, n *Node) error {
		var other wire.NodeID
		err := tx.QueryRowContext(ctx, `SELECT id FROM nodes WHERE node_key = ? AND id <> ?`, nk.String(), id).Scan(&other)
		if err == nil {
			return fmt.Errorf("%w: node key %s belongs to node %d", ErrExists, nk.ShortString(), other)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET node_key = ? WHERE id = ?`, nk.String(), id)
		return err
	})
}

func (s *sqlStore) UpdateNodeRuntime(ctx context.Context, id wire.NodeID, fn func(*NodeRuntime)) (Node, error) {
	return s.updateNode(ctx, "UpdateNodeRuntime", id, func(tx *dbTx, n *Node) error {
		rt := n.NodeRuntime
		rt.Endpoints = append([]netip.AddrPort(nil), rt.Endpoints...)
		fn(&rt)
		eps, err := marshalOpt(rt.Endpoints)
		if err != nil {
			return err
		}
		hi, err := marshalOpt(rt.Hostinfo)
		if err != nil {
			return err
		}
		osName := n.OS
		if rt.Hostinfo != nil && rt.Hostinfo.OS != "" {
			osName = rt.Hostinfo.OS
		}
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET disco_key = ?, endpoints = ?, home_region = ?, hostinfo = ?,
			last_seen = ?, os = ? WHERE id = ?`,
			rt.DiscoKey.String(), eps, rt.HomeRegion, hi, toDB(rt.LastSeen), osName, id)
		return err
	})
}

// runtimeChunk is how many nodes one transaction of SetNodeRuntimes
// writes, so that SQLite's write lock and PostgreSQL's row locks are held
// briefly.
const runtimeChunk = 500

func (s *sqlStore) SetNodeRuntimes(ctx context.Context, rts map[wire.NodeID]NodeRuntime) ([]wire.NodeID, error) {
	// In ID order, so that two servers writing overlapping sets take
	// their row locks in the same order and never wait in a cycle.
	ids := slices.Sorted(maps.Keys(rts))
	var missing []wire.NodeID
	for chunk := range slices.Chunk(ids, runtimeChunk) {
		var miss []wire.NodeID
		err := s.write(ctx, func(tx *dbTx) error {
			miss = miss[:0] // a retried transaction starts afresh
			for _, id := range chunk {
				found, err := setRuntime(ctx, tx, id, rts[id])
				if err != nil {
					return fmt.Errorf("node %d: %w", id, err)
				}
				if !found {
					miss = append(miss, id)
				}
			}
			return nil
		})
		if err != nil {
			return missing, fmt.Errorf("store: SetNodeRuntimes (%d nodes): %w", len(ids), err)
		}
		missing = append(missing, miss...)
	}
	return missing, nil
}

// setRuntime writes one node's runtime fields and reports whether the
// node exists. The OS column follows the host facts when they name one,
// as in UpdateNodeRuntime.
func setRuntime(ctx context.Context, tx *dbTx, id wire.NodeID, rt NodeRuntime) (bool, error) {
	eps, err := marshalOpt(rt.Endpoints)
	if err != nil {
		return false, err
	}
	hi, err := marshalOpt(rt.Hostinfo)
	if err != nil {
		return false, err
	}
	q := `UPDATE nodes SET disco_key = ?, endpoints = ?, home_region = ?, hostinfo = ?, last_seen = ? WHERE id = ?`
	args := []any{rt.DiscoKey.String(), eps, rt.HomeRegion, hi, toDB(rt.LastSeen), id}
	if rt.Hostinfo != nil && rt.Hostinfo.OS != "" {
		q = `UPDATE nodes SET disco_key = ?, endpoints = ?, home_region = ?, hostinfo = ?, last_seen = ?, os = ? WHERE id = ?`
		args = slices.Insert(args, 5, any(rt.Hostinfo.OS))
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (s *sqlStore) RenameNode(ctx context.Context, id wire.NodeID, name string) (Node, error) {
	if err := ValidateNodeName(name); err != nil {
		return Node{}, fmt.Errorf("store: RenameNode: %w", err)
	}
	return s.updateNode(ctx, "RenameNode", id, func(tx *dbTx, n *Node) error {
		var other wire.NodeID
		err := tx.QueryRowContext(ctx, `SELECT id FROM nodes WHERE name = ? AND id <> ?`, name, id).Scan(&other)
		if err == nil {
			return fmt.Errorf("%w: node %d is already called %q", ErrExists, other, name)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET name = ? WHERE id = ?`, name, id)
		return err
	})
}

func (s *sqlStore) ExpireNode(ctx context.Context, id wire.NodeID) (Node, error) {
	now := toDB(s.now())
	return s.updateNode(ctx, "ExpireNode", id, func(tx *dbTx, n *Node) error {
		if !n.KeyExpiry.IsZero() && toDB(n.KeyExpiry) <= now {
			return nil // already expired; keep the earlier time
		}
		_, err := tx.ExecContext(ctx, `UPDATE nodes SET key_expiry = ? WHERE id = ?`, now, id)
		return err
	})
}

func (s *sqlStore) DeleteNode(ctx context.Context, id wire.NodeID) error {
	err := s.write(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: no node with ID %d", ErrNotFound, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: DeleteNode: %w", err)
	}
	return nil
}

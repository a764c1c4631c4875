package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"weft/internal/wire"
)

// NodeSort is an order of ListNodesPage. Every order but SortID breaks
// ties by name (ascending whatever Desc says), then by ID, so a page
// boundary never splits nodes unpredictably.
type NodeSort string

// The orders of ListNodesPage. Text is compared byte by byte on every
// backend; a zero time (never seen, a key that never expires) sorts
// before every other time.
const (
	SortID        NodeSort = ""          // ID order: the order After pages by
	SortName      NodeSort = "name"      // node name
	SortOwner     NodeSort = "owner"     // user name, or a tagged node's tags joined by ", "
	SortOS        NodeSort = "os"        // operating system
	SortVersion   NodeSort = "version"   // the weft version in the node's hostinfo
	SortLastSeen  NodeSort = "lastseen"  // last time the node was connected
	SortKeyExpiry NodeSort = "keyexpiry" // node key expiry
	SortCreated   NodeSort = "created"   // first registration
)

// NodeSorts are the orders ListNodesPage knows, SortID first.
var NodeSorts = []NodeSort{SortID, SortName, SortOwner, SortOS, SortVersion, SortLastSeen, SortKeyExpiry, SortCreated}

// NodePage selects, orders and cuts a list of nodes for ListNodesPage and
// ListNodeIDs. Filters that are set must all hold.
type NodePage struct {
	User string // only this user's nodes; "" for all
	Tag  string // only nodes carrying this tag
	// Name keeps only nodes whose name contains it, ignoring ASCII case.
	Name string
	// Search keeps only nodes where it is part of, ignoring ASCII case,
	// the name, the owner (user, or tags), an address, the OS or the
	// version: the console's search box.
	Search string
	// IDs, when not nil, keeps only the nodes with these IDs.
	IDs []wire.NodeID

	Sort NodeSort // the order; SortID when empty
	Desc bool     // reverse the order (the name tie-break stays ascending)

	After  wire.NodeID // only nodes with a larger ID; only with SortID ascending
	Offset int         // skip this many of the matches first (>= 0)
	Limit  int         // at most this many (> 0); 0: all from Offset on
}

// NodeList is one page of nodes and how many the filters match in all.
type NodeList struct {
	Nodes []Node
	// Matched is the number of nodes the page's filters match, ignoring
	// After, Offset and Limit: the size of the whole list the pages cut.
	Matched int
}

// check refuses a NodePage that cannot be run.
func (q *NodePage) check() error {
	switch {
	case q.Limit < 0:
		return fmt.Errorf("%w: limit %d", ErrInvalid, q.Limit)
	case q.Offset < 0:
		return fmt.Errorf("%w: offset %d", ErrInvalid, q.Offset)
	case q.After != 0 && (q.Sort != SortID || q.Desc):
		return fmt.Errorf("%w: after pages in ascending ID order only; with sort %q or desc use offset", ErrInvalid, q.Sort)
	case !slices.Contains(NodeSorts, q.Sort):
		return fmt.Errorf("%w: unknown node sort %q", ErrInvalid, q.Sort)
	}
	return nil
}

// likePattern is a LIKE pattern (ESCAPE '\') matching any text that
// contains s, lowered.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

// jsonVerbatim reports whether s is written as itself inside a JSON
// string (encoding/json's way), so that text containing s encodes to
// JSON containing s.
func jsonVerbatim(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == '"' || r == '\\' || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029 || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// ownerExpr is the owner the console shows: the user, or the tags.
const ownerExpr = `(CASE WHEN COALESCE(u.name, '') = '' THEN REPLACE(n.tags, ',', ', ') ELSE u.name END)`

// where is the WHERE clause of q's filters (After included) and its
// arguments, or "" when nothing is filtered.
func (q *NodePage) where(d *dialect) (string, []any, error) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) { conds = append(conds, cond); args = append(args, a...) }
	if q.After != 0 {
		add(`n.id > ?`, q.After)
	}
	if q.User != "" {
		add(`u.name = ?`, q.User)
	}
	if q.Tag != "" {
		add(`(',' || n.tags || ',') LIKE ? ESCAPE '\'`, likePattern(","+q.Tag+","))
	}
	if q.Name != "" {
		add(`n.name `+d.ilike+` ? ESCAPE '\'`, likePattern(q.Name))
	}
	if q.Search != "" {
		p := likePattern(q.Search)
		var or []string
		for _, e := range []string{`n.name`, ownerExpr, `n.ipv4`, `n.ipv6`, `n.os`} {
			or = append(or, e+` `+d.ilike+` ? ESCAPE '\'`)
			args = append(args, p)
		}
		version := d.hostinfoVersion + ` ` + d.ilike + ` ? ESCAPE '\'`
		if jsonVerbatim(q.Search) {
			// Decoding every node's hostinfo is most of a search's
			// cost; a version can hold the text only if the JSON does.
			version = `(n.hostinfo ` + d.ilike + ` ? ESCAPE '\' AND ` + version + `)`
			args = append(args, p)
		}
		or = append(or, version)
		args = append(args, p)
		conds = append(conds, "("+strings.Join(or, " OR ")+")")
	}
	if q.IDs != nil {
		ids, err := json.Marshal(q.IDs)
		if err != nil {
			return "", nil, err
		}
		add(`n.id IN (`+d.idList+`)`, string(ids))
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return ` WHERE ` + strings.Join(conds, ` AND `), args, nil
}

// sortExpr is the SQL q orders by first, "" for an unknown order.
func (q *NodePage) sortExpr(d *dialect) string {
	switch q.Sort {
	case SortID:
		return `n.id`
	case SortName:
		return `n.name` + d.bytewise
	case SortOwner:
		return ownerExpr + d.bytewise
	case SortOS:
		return `n.os` + d.bytewise
	case SortVersion:
		return d.hostinfoVersion + d.bytewise
	case SortLastSeen:
		return `n.last_seen`
	case SortKeyExpiry:
		return `n.key_expiry`
	case SortCreated:
		return `n.created_at`
	}
	return ""
}

// orderBy is q's ORDER BY clause.
func (q *NodePage) orderBy(d *dialect) string {
	dir := ""
	if q.Desc {
		dir = " DESC"
	}
	if q.Sort == SortID {
		return ` ORDER BY n.id` + dir
	}
	return ` ORDER BY ` + q.sortExpr(d) + dir + `, n.name` + d.bytewise + `, n.id`
}

// limit is q's LIMIT and OFFSET, with their arguments.
func (q *NodePage) limit() (string, []any) {
	n := int64(q.Limit)
	if n == 0 {
		n = math.MaxInt64
	}
	return ` LIMIT ? OFFSET ?`, []any{n, q.Offset}
}

// nodeFrom is what a node query reads from: nodes with their user (the
// owner, the user filter) joined.
const nodeFrom = ` FROM nodes n LEFT JOIN users u ON u.id = n.user_id`

func (s *sqlStore) ListNodesPage(ctx context.Context, q NodePage) (NodeList, error) {
	var l NodeList
	if err := q.check(); err != nil {
		return l, fmt.Errorf("store: ListNodesPage: %w", err)
	}
	err := s.read(ctx, func(tx *dbTx) error {
		var err error
		if q.Limit == 0 {
			err = l.readAll(ctx, tx, q)
		} else {
			err = l.readPage(ctx, tx, q)
		}
		if err != nil || l.Matched >= 0 {
			return err
		}
		return l.count(ctx, tx, q)
	})
	if err != nil {
		return NodeList{}, fmt.Errorf("store: ListNodesPage: %w", err)
	}
	return l, nil
}

// readAll reads every node q selects from its offset on, in one query,
// and sets Matched when the reply shows it (-1 when not).
func (l *NodeList) readAll(ctx context.Context, tx *dbTx, q NodePage) error {
	where, args, err := q.where(tx.d)
	if err != nil {
		return err
	}
	lim, largs := q.limit()
	l.Nodes, err = queryNodes(ctx, tx, where+q.orderBy(tx.d)+lim, append(args, largs...)...)
	l.Matched = -1
	if q.After == 0 && len(l.Nodes) > 0 {
		l.Matched = q.Offset + len(l.Nodes)
	}
	return err
}

// readPage reads a page in two steps: the page's IDs, picked by a query
// that sorts only IDs and order keys (not whole rows); then the nodes of
// those IDs alone. It sets Matched when it can tell it on the way (-1
// when not).
func (l *NodeList) readPage(ctx context.Context, tx *dbTx, q NodePage) error {
	where, args, err := q.where(tx.d)
	if err != nil {
		return err
	}
	lim, largs := q.limit()
	// A filter that reads every row anyway counts on the way (a second
	// scan would double its cost); without one, counting on the way
	// would read every row where an index or a top-N sort need not, and
	// a COUNT after is cheaper.
	counted := q.After == 0 && (q.Search != "" || q.Name != "" || q.Tag != "")
	cols := `SELECT n.id, -1`
	if counted {
		cols = `SELECT n.id, COUNT(*) OVER ()`
	}
	rows, err := tx.QueryContext(ctx, cols+nodeFrom+where+q.orderBy(tx.d)+lim, append(args, largs...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var ids []wire.NodeID
	l.Matched = -1
	for rows.Next() {
		var id wire.NodeID
		if err := rows.Scan(&id, &l.Matched); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return err
	}
	if q.After == 0 && len(ids) < q.Limit {
		l.Matched = q.Offset + len(ids) // the page shows the end
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	nodes, err := queryNodes(ctx, tx, ` WHERE n.id IN (`+tx.d.idList+`)`, string(b))
	if err != nil {
		return err
	}
	byID := make(map[wire.NodeID]Node, len(nodes))
	for _, n := range nodes {
		byID[n.ID] = n
	}
	for _, id := range ids {
		l.Nodes = append(l.Nodes, byID[id]) // one read transaction: all there
	}
	return nil
}

// count sets l.Matched with a COUNT of q's filters without After.
func (l *NodeList) count(ctx context.Context, tx *dbTx, q NodePage) error {
	q.After = 0
	where, args, err := q.where(tx.d)
	if err != nil {
		return err
	}
	return tx.QueryRowContext(ctx, `SELECT COUNT(*)`+nodeFrom+where, args...).Scan(&l.Matched)
}

func (s *sqlStore) ListNodeIDs(ctx context.Context, q NodePage) ([]wire.NodeID, error) {
	q.Offset, q.Limit = 0, 0
	if err := q.check(); err != nil {
		return nil, fmt.Errorf("store: ListNodeIDs: %w", err)
	}
	where, args, err := q.where(s.d)
	if err != nil {
		return nil, fmt.Errorf("store: ListNodeIDs: %w", err)
	}
	var ids []wire.NodeID
	err = s.read(ctx, func(tx *dbTx) error {
		rows, err := tx.QueryContext(ctx, `SELECT n.id`+nodeFrom+where+q.orderBy(s.d), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id wire.NodeID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: ListNodeIDs: %w", err)
	}
	return ids, nil
}

package adminapi

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"weft/internal/store"
	"weft/internal/wire"
)

// NextAfterHeader is set on a node list page that has more after it; its
// value is the after= of the next page. The last page does not carry it.
const NextAfterHeader = "Weft-Next-After"

// MaxPageSize bounds limit= of a node list: large enough that a script
// reads a 10k-node tailnet in ten pages, small enough that one page stays
// a modest reply.
const MaxPageSize = 1000

// nodeQuery is the filter and page of GET /v1/nodes: nodes in ID order,
// only user's when user is set, with IDs above after, at most limit (0:
// all, the form `weft admin nodes list` uses).
type nodeQuery struct {
	user  string
	tag   string // only nodes carrying this tag
	name  string // only nodes whose name contains this
	after wire.NodeID
	limit int
	// wantOnline, when set, keeps only nodes whose presence (by online)
	// matches it.
	wantOnline *bool
	online     func(wire.NodeID) bool
}

func parseNodeQuery(v url.Values) (nodeQuery, error) {
	var q nodeQuery
	for k := range v {
		switch k {
		case "user", "tag", "name", "online", "after", "limit":
		default:
			return q, badRequest("unknown query parameter %q: nodes take user, tag, name, online, limit and after", k)
		}
	}
	q.user, q.tag, q.name = v.Get("user"), v.Get("tag"), v.Get("name")
	if s := v.Get("online"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, badRequest("online %q: want true or false", s)
		}
		q.wantOnline = &b
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return q, badRequest("limit %q: want a whole number from 1 to %d", s, MaxPageSize)
		}
		q.limit = n
	}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, badRequest("after %q: want the node ID from the %s header of the previous page", s, NextAfterHeader)
		}
		q.after = wire.NodeID(n)
	}
	return q, nil
}

// page picks the query's nodes from nodes (in ID order, as ListNodes
// returns them) and the after= of the next page, 0 when this is the last.
func (q nodeQuery) page(nodes []store.Node) ([]store.Node, wire.NodeID) {
	var out []store.Node
	for _, n := range nodes {
		if n.ID <= q.after || !q.match(n) {
			continue
		}
		if q.limit > 0 && len(out) == q.limit {
			return out, out[len(out)-1].ID
		}
		out = append(out, n)
	}
	return out, 0
}

// match reports whether n passes the query's filters.
func (q nodeQuery) match(n store.Node) bool {
	switch {
	case q.user != "" && n.User != q.user:
		return false
	case q.tag != "" && !slices.Contains(n.Tags, q.tag):
		return false
	case q.name != "" && !strings.Contains(n.Name, q.name):
		return false
	case q.wantOnline != nil:
		on := q.online != nil && q.online(n.ID)
		return on == *q.wantOnline
	}
	return true
}

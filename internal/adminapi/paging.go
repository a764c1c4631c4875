package adminapi

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"weft/internal/store"
	"weft/internal/wire"
)

// NextAfterHeader is set on a node list page in ID order that has more
// after it; its value is the after= of the next page. The last page does
// not carry it.
const NextAfterHeader = "Weft-Next-After"

// TotalHeader is set on every node list reply: how many nodes the
// filters match over all pages (what offset= walks through).
const TotalHeader = "Weft-Total"

// MaxPageSize bounds limit= of a node list: large enough that a script
// reads a 10k-node tailnet in ten pages, small enough that one page stays
// a modest reply.
const MaxPageSize = 1000

// MaxOffset bounds offset= of a node list, far above any tailnet.
const MaxOffset = 1<<31 - 1

// MaxSearch bounds q= of a node list, in bytes.
const MaxSearch = 200

// SortOnline is the order of NodeQuery.Sort that the store cannot give:
// offline nodes before online ones (Desc: online first), by name within
// each. Whether a node is online lives only in the server's memory, so
// the list is ordered on the matching IDs, and only the page's nodes are
// read.
const SortOnline = "online"

// NodeQuery is the filter, order and page of GET /v1/nodes (docs/api.md,
// Paging). Its zero value lists every node in ID order, the form `weft
// admin nodes list` uses.
type NodeQuery struct {
	User string // user=: only this user's nodes
	Tag  string // tag=: only nodes carrying this tag
	Name string // name=: only nodes whose name contains this
	// Search (q=) keeps nodes where it is part of the name, owner, an
	// address, the OS or the version, ignoring ASCII case.
	Search string
	Online *bool // online=: only nodes connected now (true) or not

	// Sort (sort=) is "" or "id", SortOnline, or one of store.NodeSorts.
	Sort string
	Desc bool // desc=: reverse the order

	After  wire.NodeID // after=: the Weft-Next-After of the last page (ID order only)
	Offset int         // offset=: skip this many matches first
	Limit  int         // limit=: at most this many (1..MaxPageSize); 0 for all
}

// Values is q as the query string parseNodeQuery reads.
func (q NodeQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("user", q.User)
	set("tag", q.Tag)
	set("name", q.Name)
	set("q", q.Search)
	if q.Online != nil {
		v.Set("online", strconv.FormatBool(*q.Online))
	}
	set("sort", q.Sort)
	if q.Desc {
		v.Set("desc", "true")
	}
	if q.After != 0 {
		v.Set("after", strconv.FormatInt(int64(q.After), 10))
	}
	if q.Offset != 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// nodeSortNames lists the sort= values for error messages.
func nodeSortNames() string {
	names := []string{"id", SortOnline}
	for _, s := range store.NodeSorts[1:] {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

func parseNodeQuery(v url.Values) (NodeQuery, error) {
	var q NodeQuery
	for k := range v {
		switch k {
		case "user", "tag", "name", "q", "online", "sort", "desc", "after", "offset", "limit":
		default:
			return q, badRequest("unknown query parameter %q: nodes take user, tag, name, q, online, sort, desc, after, offset and limit", k)
		}
	}
	q.User, q.Tag, q.Name, q.Search = v.Get("user"), v.Get("tag"), v.Get("name"), v.Get("q")
	if len(q.Search) > MaxSearch {
		return q, badRequest("q: %d bytes, want at most %d", len(q.Search), MaxSearch)
	}
	var err error
	if q.Online, err = parseOptBool(v, "online"); err != nil {
		return q, err
	}
	desc, err := parseOptBool(v, "desc")
	if err != nil {
		return q, err
	}
	q.Desc = desc != nil && *desc
	q.Sort = v.Get("sort")
	if q.Sort == "id" {
		q.Sort = ""
	}
	if q.Sort != SortOnline && !slices.Contains(store.NodeSorts, store.NodeSort(q.Sort)) {
		return q, badRequest("sort %q: want one of %s", v.Get("sort"), nodeSortNames())
	}
	if q.Limit, err = parseBounded(v, "limit", 1, MaxPageSize); err != nil {
		return q, err
	}
	if q.Offset, err = parseBounded(v, "offset", 0, MaxOffset); err != nil {
		return q, err
	}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, badRequest("after %q: want the node ID from the %s header of the previous page", s, NextAfterHeader)
		}
		if q.Sort != "" || q.Desc {
			return q, badRequest("after pages in ascending ID order only: with sort= or desc=, page with offset")
		}
		q.After = wire.NodeID(n)
	}
	return q, nil
}

// pagesByID reports whether q's pages are walked with after= (ascending
// ID order, a limit): then a reply names the next page's after.
func (q NodeQuery) pagesByID() bool { return q.Sort == "" && !q.Desc && q.Limit > 0 }

// parseOptBool reads the boolean parameter k, nil when absent.
func parseOptBool(v url.Values, k string) (*bool, error) {
	s := v.Get(k)
	if s == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, badRequest("%s %q: want true or false", k, s)
	}
	return &b, nil
}

// parseBounded reads the whole-number parameter k, lo to hi, 0 when
// absent.
func parseBounded(v url.Values, k string, lo, hi int) (int, error) {
	s := v.Get(k)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s %q: want a whole number from %d to %d", k, s, lo, hi)
	}
	return n, nil
}

// nodeList is one page of GET /v1/nodes: its nodes, the count of all
// matches, and the after= of the next page (0 when none, or not in ID
// order).
type nodeList struct {
	nodes   []store.Node
	matched int
	next    wire.NodeID
}

// listNodePage reads q's page: straight from the store, which filters,
// orders and cuts it, reading only the page; or, for what the store does
// not know (online), by ordering and cutting the matching IDs and then
// reading only the page's nodes. No form reads every node.
func (s *Server) listNodePage(ctx context.Context, q NodeQuery) (nodeList, error) {
	sp := store.NodePage{User: q.User, Tag: q.Tag, Name: q.Name, Search: q.Search,
		Sort: store.NodeSort(q.Sort), Desc: q.Desc, After: q.After, Offset: q.Offset, Limit: q.Limit}
	if q.Online != nil || q.Sort == SortOnline {
		return s.listByIDs(ctx, q, sp)
	}
	if q.pagesByID() {
		sp.Limit++ // one more tells whether a next page exists
	}
	l, err := s.Store.ListNodesPage(ctx, sp)
	if err != nil {
		return nodeList{}, err
	}
	out := nodeList{nodes: l.Nodes, matched: l.Matched}
	if q.Limit > 0 && len(out.nodes) > q.Limit {
		out.nodes = out.nodes[:q.Limit]
		out.next = out.nodes[q.Limit-1].ID
	}
	return out, nil
}

// listByIDs is listNodePage for a query on the online state: the IDs the
// store's filters match, kept and ordered by online state in memory, cut
// to the page, whose nodes alone are then read.
func (s *Server) listByIDs(ctx context.Context, q NodeQuery, sp store.NodePage) (nodeList, error) {
	online := func(id wire.NodeID) bool { return s.Online != nil && s.Online(id) }
	if q.Sort == SortOnline {
		sp.Sort, sp.Desc = store.SortName, false
	}
	sp.After = 0 // the count covers the pages before After too
	ids, err := s.Store.ListNodeIDs(ctx, sp)
	if err != nil {
		return nodeList{}, err
	}
	if q.Online != nil {
		ids = slices.DeleteFunc(ids, func(id wire.NodeID) bool { return online(id) != *q.Online })
	}
	if q.Sort == SortOnline {
		slices.SortStableFunc(ids, func(a, b wire.NodeID) int {
			oa, ob := online(a), online(b)
			switch {
			case oa == ob:
				return 0
			case oa != q.Desc: // ascending: offline first
				return 1
			}
			return -1
		})
	}
	out := nodeList{matched: len(ids)}
	if q.After != 0 { // in ID order (parseNodeQuery saw to it)
		ids = slices.DeleteFunc(ids, func(id wire.NodeID) bool { return id <= q.After })
	}
	lo := min(q.Offset, len(ids))
	hi := len(ids)
	if q.Limit > 0 {
		hi = min(lo+q.Limit, len(ids))
	}
	page := ids[lo:hi]
	if q.pagesByID() && hi < len(ids) && len(page) > 0 {
		out.next = page[len(page)-1]
	}
	if len(page) == 0 {
		return out, nil
	}
	l, err := s.Store.ListNodesPage(ctx, store.NodePage{IDs: page})
	if err != nil {
		return nodeList{}, err
	}
	byID := make(map[wire.NodeID]store.Node, len(l.Nodes))
	for _, n := range l.Nodes {
		byID[n.ID] = n
	}
	for _, id := range page {
		if n, ok := byID[id]; ok { // deleted between the two reads: left out
			out.nodes = append(out.nodes, n)
		}
	}
	return out, nil
}

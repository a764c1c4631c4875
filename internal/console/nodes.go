package console

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"weft/internal/adminapi"
	"weft/internal/tailnet"
)

// PageSize is how many nodes one page of the nodes table shows. The
// table is cut server-side, so a 10,000-node tailnet renders as fast as
// a small one.
const PageSize = 100

// nodeRow is one line of the nodes table.
type nodeRow struct {
	ID                                   string
	Name, Owner, IPv4, IPv6, OS, Version string
	Online                               string // "online", "offline" or "-"
	Path                                 string // how the node reaches the tailnet
	Exit                                 bool   // an approved exit node
	Routes                               string // subnet routes in effect
	Pending                              int    // advertised routes awaiting approval
	LastSeen, KeyExpiry                  time.Time
	Expired                              bool
}

// nodesView is the nodes page: one page of the filtered, sorted table.
type nodesView struct {
	Now              time.Time
	Query, Sort      string
	Desc             bool
	Rows             []nodeRow
	Total, Matched   int
	Page, Pages      int
	PrevURL, NextURL string
	SortURLs         map[string]string
}

// sortKeys are the columns the nodes table sorts by, each with the
// admin API's sort= for it. "state" is the admin API's online order:
// offline before online, so its second click (desc) shows the online
// nodes first, by name within each.
var sortKeys = map[string]string{
	"name":      "name",
	"owner":     "owner",
	"state":     adminapi.SortOnline,
	"os":        "os",
	"version":   "version",
	"lastseen":  "lastseen",
	"keyexpiry": "keyexpiry",
}

// nodesPage is the console's home: the nodes table, searched by ?q=
// (a substring of name, owner, address, OS or version), sorted by ?sort=
// (&desc=1), one PageSize page at ?page=. The admin API searches, sorts
// and cuts the table and sends only the page shown, so a view of a
// 10,000-node tailnet reads and renders what one of 100 nodes does.
func (s *Server) nodesPage(w http.ResponseWriter, r *http.Request, sess session) {
	q := r.URL.Query()
	v := nodesView{Now: s.now(), Query: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"), Desc: q.Get("desc") == "1"}
	if _, ok := sortKeys[v.Sort]; !ok {
		v.Sort = "name"
	}
	if len(v.Query) > adminapi.MaxSearch {
		v.Query = v.Query[:adminapi.MaxSearch] // cut at a byte: a search for what fits
	}
	v.Page, _ = strconv.Atoi(q.Get("page"))
	v.Page = min(max(v.Page, 1), adminapi.MaxOffset/PageSize)
	nq := adminapi.NodeQuery{Search: v.Query, Sort: sortKeys[v.Sort], Desc: v.Desc, Offset: (v.Page - 1) * PageSize, Limit: PageSize}
	l, err := s.api.ListNodesPage(r.Context(), nq)
	if err == nil && len(l.Nodes) == 0 && l.Total > 0 {
		// Past the end: the last page, as a pager link to a page a
		// deletion emptied should still show something.
		v.Page = (l.Total + PageSize - 1) / PageSize
		nq.Offset = (v.Page - 1) * PageSize
		l, err = s.api.ListNodesPage(r.Context(), nq)
	}
	v.Total, v.Matched = l.Total, l.Total
	if err == nil && v.Query != "" {
		// The count of every node the person may see, besides the
		// matches: a one-node page of the unsearched list.
		var all adminapi.NodeList
		all, err = s.api.ListNodesPage(r.Context(), adminapi.NodeQuery{Limit: 1})
		v.Total = all.Total
	}
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	v.Pages = max(1, (v.Matched+PageSize-1)/PageSize)
	v.Page = min(v.Page, v.Pages)
	for i := range l.Nodes {
		v.Rows = append(v.Rows, makeNodeRow(&l.Nodes[i], v.Now))
	}
	v.links()
	s.page(w, r, http.StatusOK, "nodes", &pageData{Title: "Nodes", Nav: "nodes", CSRF: sess.csrf,
		Message: notices[r.URL.Query().Get("done")], Data: v})
}

// links fills the URLs of the pager and the column headers, keeping the
// search.
func (v *nodesView) links() {
	u := func(sort string, desc bool, page int) string {
		q := url.Values{}
		if v.Query != "" {
			q.Set("q", v.Query)
		}
		if sort != "name" {
			q.Set("sort", sort)
		}
		if desc {
			q.Set("desc", "1")
		}
		if page > 1 {
			q.Set("page", strconv.Itoa(page))
		}
		if len(q) == 0 {
			return Prefix
		}
		return Prefix + "?" + q.Encode()
	}
	if v.Page > 1 {
		v.PrevURL = u(v.Sort, v.Desc, v.Page-1)
	}
	if v.Page < v.Pages {
		v.NextURL = u(v.Sort, v.Desc, v.Page+1)
	}
	v.SortURLs = map[string]string{}
	for k := range sortKeys {
		v.SortURLs[k] = u(k, k == v.Sort && !v.Desc, 1)
	}
}

func makeNodeRow(n *adminapi.Node, now time.Time) nodeRow {
	row := nodeRow{ID: strconv.FormatInt(int64(n.ID), 10), Name: n.Name, Owner: n.User, OS: n.OS,
		LastSeen: n.LastSeen, KeyExpiry: n.KeyExpiry, Expired: n.KeyExpired(now), Online: "-", Path: pathSummary(n)}
	if row.Owner == "" {
		row.Owner = strings.Join(n.Tags, ", ")
	}
	if n.IPv4.IsValid() {
		row.IPv4 = n.IPv4.String()
	}
	if n.IPv6.IsValid() {
		row.IPv6 = n.IPv6.String()
	}
	if n.Hostinfo != nil {
		row.Version = n.Hostinfo.Version
	}
	if n.Online != nil {
		row.Online = map[bool]string{true: "online", false: "offline"}[*n.Online]
	}
	var subnets []string
	for _, p := range n.EnabledRoutes() {
		if tailnet.IsExitRoute(p) {
			row.Exit = true
		} else {
			subnets = append(subnets, p.String())
		}
	}
	row.Routes = strings.Join(subnets, ", ")
	exitPending := false
	for _, p := range n.AdvertisedRoutes {
		if slices.Contains(n.ApprovedRoutes, p) {
			continue
		}
		if tailnet.IsExitRoute(p) {
			exitPending = true // the two exit routes are one request
		} else {
			row.Pending++
		}
	}
	if exitPending {
		row.Pending++
	}
	return row
}

// pathSummary says in a few words how the node reaches the tailnet, from
// its last network report: whether UDP works (direct paths possible),
// whether its NAT maps per destination (direct paths hard), and its home
// relay region.
func pathSummary(n *adminapi.Node) string {
	if n.Hostinfo == nil || n.Hostinfo.NetInfo == nil {
		return "-"
	}
	ni := n.Hostinfo.NetInfo
	var parts []string
	switch {
	case !ni.UDP:
		parts = append(parts, "no UDP: relay only")
	case ni.MappingVariesByDestIP:
		parts = append(parts, "UDP, hard NAT")
	default:
		parts = append(parts, "UDP, direct")
	}
	if ni.PreferredRegion != 0 {
		r := fmt.Sprintf("relay %d", ni.PreferredRegion)
		if ms, ok := ni.RegionLatencyMS[ni.PreferredRegion]; ok {
			r += fmt.Sprintf(" (%d ms)", ms)
		}
		parts = append(parts, r)
	}
	return strings.Join(parts, "; ")
}

// routeRow is one route on the node page.
type routeRow struct {
	Prefix                     string
	Exit, Advertised, Approved bool
	AutoApprovedBy             string
}

// nodeView is the node page.
type nodeView struct {
	Row       nodeRow
	Node      adminapi.Node
	Routes    []routeRow
	Endpoints []string
	Form      nodeForm
}

// nodePage shows one node: its addresses, its routes with approve and
// reject buttons, the forms that rename, tag, expire and delete it, and
// the health plots (drawn by health.js from health.json).
func (s *Server) nodePage(w http.ResponseWriter, r *http.Request, sess session) {
	s.renderNode(w, r, sess, http.StatusOK, "", nil)
}

// renderNode shows the node page at status: with refusal above it and
// the forms holding f when a change was refused, or the node's own
// values (f nil).
func (s *Server) renderNode(w http.ResponseWriter, r *http.Request, sess session, status int, refusal string, f *nodeForm) {
	n, err := s.api.GetNode(r.Context(), r.PathValue("node"))
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	v := nodeView{Row: makeNodeRow(&n, s.now()), Node: n, Form: nodeForm{Name: n.Name, Tags: strings.Join(n.Tags, ", ")}}
	if f != nil {
		v.Form.Refused = f.Refused
		switch f.Refused {
		case "rename":
			v.Form.Name = f.Name
		case "tags":
			v.Form.Tags = f.Tags
		}
	}
	for _, e := range n.Endpoints {
		v.Endpoints = append(v.Endpoints, e.String())
	}
	routes, err := s.api.NodeRoutes(r.Context(), fmt.Sprintf("id:%d", n.ID))
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	for _, rt := range routes {
		v.Routes = append(v.Routes, routeRow{Prefix: rt.Prefix.String(), Exit: tailnet.IsExitRoute(rt.Prefix),
			Advertised: rt.Advertised, Approved: rt.Approved, AutoApprovedBy: rt.AutoApprovedBy})
	}
	notice := ""
	if f == nil {
		notice = notices[r.URL.Query().Get("done")]
	}
	s.page(w, r, status, "node", &pageData{Title: n.Name, Nav: "nodes", CSRF: sess.csrf, Message: notice, Error: refusal,
		Scripts: []string{"vendor/uplot/uPlot.iife.min.js", "health.js"}, Data: v})
}

// nodeRoutes approves or rejects one route (or both exit routes, for
// prefix "exit") of the node: POST prefix=P&action=approve|reject.
func (s *Server) nodeRoutes(w http.ResponseWriter, r *http.Request, sess session) {
	ref := r.PathValue("node")
	var prefixes []netip.Prefix
	if p := r.PostFormValue("prefix"); p == "exit" {
		prefixes = tailnet.ExitRoutes()
	} else if pfx, err := netip.ParsePrefix(p); err == nil {
		prefixes = []netip.Prefix{pfx}
	} else {
		s.renderNode(w, r, sess, http.StatusBadRequest, fmt.Sprintf("%q is not a route: give a prefix such as 10.0.0.0/24", p), &nodeForm{})
		return
	}
	var err error
	action := r.PostFormValue("action")
	switch action {
	case "approve":
		_, err = s.api.ApproveRoutes(r.Context(), ref, prefixes)
	case "reject":
		_, err = s.api.RejectRoutes(r.Context(), ref, prefixes)
	default:
		s.renderNode(w, r, sess, http.StatusBadRequest, "action must be approve or reject", &nodeForm{})
		return
	}
	if err != nil {
		s.refuseNode(w, r, sess, err, nodeForm{})
		return
	}
	http.Redirect(w, r, Prefix+"nodes/"+url.PathEscape(ref)+"?done=routes-"+action, http.StatusSeeOther)
}

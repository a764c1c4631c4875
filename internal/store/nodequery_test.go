package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"weft/internal/wire"
)

// queryFixture fills f with nodes that differ in every sortable column:
// two users and a tagged node, OS and version from hostinfo (one node
// with none), last seen and key expiry (never for the tagged node), and
// returns every node as ListNodes reads it.
func queryFixture(t *testing.T, f *fixture) []Node {
	ctx := context.Background()
	f.user("alice")
	f.user("bob")
	ka, kb := f.key(AuthKeyRequest{User: "alice", Reusable: true}), f.key(AuthKeyRequest{User: "bob", Reusable: true})
	oses := []string{"linux", "windows", "macOS", "linux", "freebsd"}
	for i := range 11 {
		k := ka
		if i%3 == 0 {
			k = kb
		}
		// Names are out of ID order, so that each order is seen to act.
		n := f.register(k, fmt.Sprintf("host%02d", (i*7)%11))
		if i == 5 {
			continue // no hostinfo, never seen
		}
		f.clock.Advance(time.Minute)
		_, err := f.s.UpdateNodeRuntime(ctx, n.ID, func(r *NodeRuntime) {
			r.Hostinfo = &wire.Hostinfo{OS: oses[i%len(oses)], Version: fmt.Sprintf("1.%d.0", (i*5)%4)}
			r.LastSeen = f.clock.Now().Add(time.Duration((i*3)%5) * time.Hour)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.SetNodeTags(ctx, 3, []string{"tag:db", "tag:web"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []wire.NodeID{2, 10} {
		if _, err := f.s.SetAdvertisedRoutes(ctx, id, []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", id))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.ApproveRoute(ctx, 10, netip.MustParsePrefix("10.10.0.0/24")); err != nil {
		t.Fatal(err)
	}
	all, err := f.s.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// owner is the owner column of n as the store sorts and searches it.
func owner(n Node) string {
	if n.User != "" {
		return n.User
	}
	return strings.Join(n.Tags, ", ")
}

func version(n Node) string {
	if n.Hostinfo == nil {
		return ""
	}
	return n.Hostinfo.Version
}

// goOrders are the orders of NodeSorts written in Go, as the console
// sorted before the store did.
var goOrders = map[NodeSort]func(a, b Node) int{
	SortID:        func(a, b Node) int { return cmp.Compare(a.ID, b.ID) },
	SortName:      func(a, b Node) int { return strings.Compare(a.Name, b.Name) },
	SortOwner:     func(a, b Node) int { return strings.Compare(owner(a), owner(b)) },
	SortOS:        func(a, b Node) int { return strings.Compare(a.OS, b.OS) },
	SortVersion:   func(a, b Node) int { return strings.Compare(version(a), version(b)) },
	SortLastSeen:  func(a, b Node) int { return a.LastSeen.Compare(b.LastSeen) },
	SortKeyExpiry: func(a, b Node) int { return a.KeyExpiry.Compare(b.KeyExpiry) },
	SortCreated:   func(a, b Node) int { return a.CreatedAt.Compare(b.CreatedAt) },
}

func nodeIDs(ns []Node) []wire.NodeID {
	var ids []wire.NodeID
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	return ids
}

// TestListNodesPageOrders: every order, both ways, cut at every offset,
// gives the order the same comparison written in Go gives (ties by name),
// with the routes of each node and the count of all; ListNodeIDs gives
// the same order.
func TestListNodesPageOrders(t *testing.T) {
	if len(goOrders) != len(NodeSorts) {
		t.Fatalf("goOrders has %d orders, NodeSorts %d", len(goOrders), len(NodeSorts))
	}
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		all := queryFixture(t, f)
		for _, sort := range NodeSorts {
			for _, desc := range []bool{false, true} {
				want := slices.Clone(all)
				slices.SortStableFunc(want, func(a, b Node) int {
					c := goOrders[sort](a, b)
					if desc {
						c = -c
					}
					return cmp.Or(c, strings.Compare(a.Name, b.Name))
				})
				ids, err := f.s.ListNodeIDs(ctx, NodePage{Sort: sort, Desc: desc, Limit: 2})
				if err != nil || !slices.Equal(ids, nodeIDs(want)) {
					t.Fatalf("sort %q desc %v: ListNodeIDs %v, %v; want %v", sort, desc, ids, err, nodeIDs(want))
				}
				for off := 0; off <= len(all); off += 4 {
					l, err := f.s.ListNodesPage(ctx, NodePage{Sort: sort, Desc: desc, Offset: off, Limit: 4})
					if err != nil {
						t.Fatal(err)
					}
					w := want[off:min(off+4, len(want))]
					if !slices.Equal(nodeIDs(l.Nodes), nodeIDs(w)) || l.Matched != len(all) {
						t.Fatalf("sort %q desc %v offset %d: %v (matched %d), want %v (%d)",
							sort, desc, off, nodeIDs(l.Nodes), l.Matched, nodeIDs(w), len(all))
					}
					gj, _ := json.Marshal(l.Nodes)
					wj, _ := json.Marshal(w)
					if string(gj) != string(wj) {
						t.Fatalf("sort %q desc %v offset %d: nodes read differently from ListNodes:\n%s\n%s", sort, desc, off, gj, wj)
					}
				}
			}
		}
	})
}

// TestListNodesPageFilters: each filter alone and together, matched by
// the same test written in Go; the count covers all pages.
func TestListNodesPageFilters(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		all := queryFixture(t, f)
		has := func(s, sub string) bool { return strings.Contains(strings.ToLower(s), strings.ToLower(sub)) }
		search := func(sub string) func(Node) bool {
			return func(n Node) bool {
				return has(n.Name, sub) || has(owner(n), sub) || has(n.IPv4.String(), sub) ||
					has(n.IPv6.String(), sub) || has(n.OS, sub) || has(version(n), sub)
			}
		}
		for _, c := range []struct {
			name string
			q    NodePage
			keep func(Node) bool
		}{
			{"user", NodePage{User: "bob"}, func(n Node) bool { return n.User == "bob" }},
			{"tag", NodePage{Tag: "tag:web"}, func(n Node) bool { return slices.Contains(n.Tags, "tag:web") }},
			{"tag prefix is not the tag", NodePage{Tag: "tag:we"}, func(Node) bool { return false }},
			{"name", NodePage{Name: "HOST0"}, func(n Node) bool { return has(n.Name, "host0") }},
			{"search name", NodePage{Search: "st03"}, search("st03")},
			{"search owner", NodePage{Search: "ALI"}, search("ali")},
			{"search tags", NodePage{Search: "db, tag:w"}, search("db, tag:w")},
			{"search OS", NodePage{Search: "macos"}, search("macos")},
			{"search version", NodePage{Search: "1.3."}, search("1.3.")},
			{"search address", NodePage{Search: all[4].IPv4.String()}, search(all[4].IPv4.String())},
			{"search IPv6", NodePage{Search: all[2].IPv6.String()}, search(all[2].IPv6.String())},
			{"search wildcards are text", NodePage{Search: "%"}, func(Node) bool { return false }},
			{"search underscore is text", NodePage{Search: "host_1"}, func(Node) bool { return false }},
			{"ids", NodePage{IDs: []wire.NodeID{9, 2, 4, 999}}, func(n Node) bool { return n.ID == 2 || n.ID == 4 || n.ID == 9 }},
			{"no ids", NodePage{IDs: []wire.NodeID{}}, func(Node) bool { return false }},
			{"user and search", NodePage{User: "alice", Search: "linux"}, func(n Node) bool { return n.User == "alice" && search("linux")(n) }},
		} {
			t.Run(c.name, func(t *testing.T) {
				var want []wire.NodeID
				for _, n := range all {
					if c.keep(n) {
						want = append(want, n.ID)
					}
				}
				q := c.q
				q.Limit = 2
				var got []wire.NodeID
				for {
					l, err := f.s.ListNodesPage(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if l.Matched != len(want) {
						t.Fatalf("offset %d: matched %d, want %d", q.Offset, l.Matched, len(want))
					}
					if len(l.Nodes) == 0 {
						break
					}
					got = append(got, nodeIDs(l.Nodes)...)
					q.Offset += q.Limit
				}
				if !slices.Equal(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			})
		}
	})
}

// TestListNodesPageRefused: a query the store cannot run is ErrInvalid
// and reads nothing.
func TestListNodesPageRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		for _, q := range []NodePage{
			{Limit: -1},
			{Offset: -1},
			{Sort: "state"},
			{Sort: "name; DROP TABLE nodes"},
			{Sort: SortName, After: 3},
			{Desc: true, After: 3},
		} {
			if _, err := f.s.ListNodesPage(ctx, q); !errors.Is(err, ErrInvalid) {
				t.Errorf("ListNodesPage(%+v): %v, want ErrInvalid", q, err)
			}
			if q.Limit >= 0 && q.Offset >= 0 {
				if _, err := f.s.ListNodeIDs(ctx, q); !errors.Is(err, ErrInvalid) {
					t.Errorf("ListNodeIDs(%+v): %v, want ErrInvalid", q, err)
				}
			}
		}
	})
}

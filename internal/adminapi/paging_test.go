package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tstest/storetest"
	"weft/internal/wire"
)

// pagingEnv is an admin API in process on a store of n nodes: alice owns
// the even IDs, bob the odd ones; nodes with IDs divisible by 3 are
// online. Names run against IDs (node ID 1 is the last by name).
func pagingEnv(t *testing.T, n int) (*storetest.NodeReads, *Server) {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t, "", store.Options{}, "alice", "bob")
	keys := map[string]string{}
	for _, u := range []string{"alice", "bob"} {
		var err error
		if keys[u], _, err = st.CreateAuthKey(ctx, store.AuthKeyRequest{User: u, Reusable: true}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		u := map[bool]string{true: "alice", false: "bob"}[i%2 == 0]
		_, err := st.Register(ctx, store.RegisterRequest{AuthKey: keys[u], MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: fmt.Sprintf("n%03d", n-i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	cs := &storetest.NodeReads{Store: st}
	return cs, &Server{Store: cs, Online: func(id wire.NodeID) bool { return id%3 == 0 }}
}

// list calls GET /v1/nodes as a: the IDs of the page, the total header.
func list(t *testing.T, s *Server, a Actor, q NodeQuery) ([]wire.NodeID, int, wire.NodeID) {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.APIHandler().ServeHTTP(w, r.WithContext(WithActor(r.Context(), a)))
	})
	l, err := NewHandlerClient(h).ListNodesPage(context.Background(), q)
	if err != nil {
		t.Fatalf("%v: %v", q.Values(), err)
	}
	var ids []wire.NodeID
	for _, n := range l.Nodes {
		ids = append(ids, n.ID)
	}
	return ids, l.Total, l.NextAfter
}

func idRange(lo, hi wire.NodeID, keep func(wire.NodeID) bool) []wire.NodeID {
	var out []wire.NodeID
	for id := lo; id <= hi; id++ {
		if keep == nil || keep(id) {
			out = append(out, id)
		}
	}
	return out
}

// TestNodeListOrders: the node list's orders, the online one included,
// cut with offset and limit; the total counts all pages; a member's list
// is their own; and no page reads every node or more rows than it shows.
func TestNodeListOrders(t *testing.T) {
	const n = 30
	cs, s := pagingEnv(t, n)
	admin := Actor{Role: store.RoleAdmin}
	bob := Actor{User: "bob", Role: store.RoleMember}
	on := func(id wire.NodeID) bool { return id%3 == 0 }
	byName := idRange(1, n, nil)
	slices.Reverse(byName) // names run against IDs
	onlineFirst := append(slices.DeleteFunc(slices.Clone(byName), func(id wire.NodeID) bool { return !on(id) }),
		slices.DeleteFunc(slices.Clone(byName), on)...)
	offlineFirst := append(slices.DeleteFunc(slices.Clone(byName), on),
		slices.DeleteFunc(slices.Clone(byName), func(id wire.NodeID) bool { return !on(id) })...)
	yes, no := true, false
	for _, c := range []struct {
		name  string
		a     Actor
		q     NodeQuery
		want  []wire.NodeID
		total int
		next  wire.NodeID
	}{
		{"ID order, first page", admin, NodeQuery{Limit: 5}, idRange(1, 5, nil), n, 5},
		{"ID order after", admin, NodeQuery{Limit: 5, After: 27}, idRange(28, 30, nil), n, 0},
		{"ID order, offset", admin, NodeQuery{Limit: 5, Offset: 10}, idRange(11, 15, nil), n, 15},
		{"ID order, desc", admin, NodeQuery{Desc: true, Limit: 3}, []wire.NodeID{30, 29, 28}, n, 0},
		{"by name", admin, NodeQuery{Sort: "name", Limit: 4}, byName[:4], n, 0},
		{"by name, last page", admin, NodeQuery{Sort: "name", Offset: 28, Limit: 4}, byName[28:], n, 0},
		{"past the end", admin, NodeQuery{Sort: "name", Offset: 1000, Limit: 4}, nil, n, 0},
		{"by name, desc", admin, NodeQuery{Sort: "name", Desc: true, Limit: 3}, []wire.NodeID{1, 2, 3}, n, 0},
		{"search", admin, NodeQuery{Sort: "name", Search: "N00"}, []wire.NodeID{30, 29, 28, 27, 26, 25, 24, 23, 22, 21}, 10, 0},
		{"online first", admin, NodeQuery{Sort: SortOnline, Desc: true, Limit: 12}, onlineFirst[:12], n, 0},
		{"offline first, second page", admin, NodeQuery{Sort: SortOnline, Offset: 18, Limit: 5}, offlineFirst[18:23], n, 0},
		{"online only, ID order", admin, NodeQuery{Online: &yes, Limit: 4}, []wire.NodeID{3, 6, 9, 12}, 10, 12},
		{"online only, after", admin, NodeQuery{Online: &yes, Limit: 4, After: 24}, []wire.NodeID{27, 30}, 10, 0},
		{"offline by name", admin, NodeQuery{Online: &no, Sort: "name", Limit: 3}, []wire.NodeID{29, 28, 26}, 20, 0},
		{"member: own nodes only", bob, NodeQuery{Sort: "name", Limit: 3}, []wire.NodeID{29, 27, 25}, 15, 0},
		{"member: online first", bob, NodeQuery{Sort: SortOnline, Desc: true, Limit: 3}, []wire.NodeID{27, 21, 15}, 15, 0},
		{"member: search finds no other's", bob, NodeQuery{Search: "n000"}, nil, 0, 0},
		{"all, no limit", admin, NodeQuery{}, idRange(1, n, nil), n, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(cs.Counts().Pages)
			got, total, next := list(t, s, c.a, c.q)
			if !slices.Equal(got, c.want) || total != c.total || next != c.next {
				t.Fatalf("got %v total %d next %d; want %v total %d next %d", got, total, next, c.want, c.total, c.next)
			}
			if c.q.Limit == 0 {
				return
			}
			for _, p := range cs.Counts().Pages[before:] {
				if p.Limit == 0 && p.IDs == nil || p.Limit > c.q.Limit+1 || len(p.IDs) > c.q.Limit {
					t.Fatalf("a page of %d asked the store for %+v", c.q.Limit, p)
				}
			}
		})
	}
	if n := cs.Counts().ListAll; n != 0 {
		t.Fatalf("the node list read every node (ListNodes) %d times", n)
	}
}

// TestMemberRoutesOwnOnly: a member's route list holds only the routes of
// their own nodes, found by their IDs without reading every node.
func TestMemberRoutesOwnOnly(t *testing.T) {
	cs, s := pagingEnv(t, 6)
	ctx := context.Background()
	for _, id := range []wire.NodeID{1, 2, 5} { // bob, alice, bob
		if _, err := cs.SetAdvertisedRoutes(ctx, id, []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", id))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		a    Actor
		want []wire.NodeID
	}{
		{Actor{User: "bob", Role: store.RoleMember}, []wire.NodeID{1, 5}},
		{Actor{User: "carol", Role: store.RoleMember}, nil},
		{Actor{Role: store.RoleMember}, nil},
		{Actor{Role: store.RoleAdmin}, []wire.NodeID{1, 2, 5}},
	} {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.APIHandler().ServeHTTP(w, r.WithContext(WithActor(r.Context(), c.a)))
		})
		rs, err := NewHandlerClient(h).ListRoutes(ctx)
		var got []wire.NodeID
		for _, r := range rs {
			got = append(got, r.NodeID)
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%+v: routes of nodes %v, %v; want %v", c.a, got, err, c.want)
		}
	}
	if n := cs.Counts().ListAll; n != 0 {
		t.Fatalf("the route list read every node (ListNodes) %d times", n)
	}
}

// TestParseNodeQuery: every parameter at its bounds, and Values reads
// back as the same query.
func TestParseNodeQuery(t *testing.T) {
	yes := true
	for _, c := range []struct {
		in   string
		want NodeQuery
		err  string // part of the error; "" for none
	}{
		{"", NodeQuery{}, ""},
		{"sort=id", NodeQuery{}, ""},
		{"sort=online&desc=1&q=Linux&online=true&offset=0&limit=1000", NodeQuery{Sort: SortOnline, Desc: true, Search: "Linux", Online: &yes, Limit: 1000}, ""},
		{"sort=keyexpiry&offset=2147483647&limit=1", NodeQuery{Sort: "keyexpiry", Offset: MaxOffset, Limit: 1}, ""},
		{"after=9&limit=2&user=bob&tag=tag:x&name=n", NodeQuery{After: 9, Limit: 2, User: "bob", Tag: "tag:x", Name: "n"}, ""},
		{"q=" + strings.Repeat("x", MaxSearch), NodeQuery{Search: strings.Repeat("x", MaxSearch)}, ""},
		{"sort=state", NodeQuery{}, `sort "state": want one of id, online, name, owner, os, version, lastseen, keyexpiry, created`},
		{"sort=NAME", NodeQuery{}, "want one of"},
		{"desc=yes", NodeQuery{}, `desc "yes": want true or false`},
		{"online=2", NodeQuery{}, "online"},
		{"offset=-1", NodeQuery{}, `offset "-1": want a whole number from 0 to 2147483647`},
		{"offset=2147483648", NodeQuery{}, "offset"},
		{"offset=1.5", NodeQuery{}, "offset"},
		{"limit=0", NodeQuery{}, `limit "0": want a whole number from 1 to 1000`},
		{"limit=1001", NodeQuery{}, "limit"},
		{"limit=99999999999999999999", NodeQuery{}, "limit"},
		{"after=-3", NodeQuery{}, "after"},
		{"sort=lastseen&after=3", NodeQuery{}, "page with offset"},
		{"desc=true&after=3", NodeQuery{}, "page with offset"},
		{"q=" + strings.Repeat("x", MaxSearch+1), NodeQuery{}, "q: 201 bytes"},
		{"page=2", NodeQuery{}, `unknown query parameter "page"`},
	} {
		t.Run(c.in, func(t *testing.T) {
			v, _ := url.ParseQuery(c.in)
			q, err := parseNodeQuery(v)
			if c.err != "" {
				if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want ErrInvalid with %q", err, c.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(q, c.want) {
				t.Fatalf("got %+v, %v; want %+v", q, err, c.want)
			}
			back, err := parseNodeQuery(q.Values())
			if err != nil || !reflect.DeepEqual(back, q) {
				t.Fatalf("Values %q reads back as %+v, %v", q.Values().Encode(), back, err)
			}
		})
	}
}

// FuzzParseNodeQuery: any query string is refused or parsed into a query
// whose Values read back as the same query.
func FuzzParseNodeQuery(f *testing.F) {
	for _, s := range []string{"", "sort=online&desc=true&offset=3&limit=7", "q=%25&after=1", "limit=-1", "sort=name&after=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		q, err := parseNodeQuery(v)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid (a 400)", s, err)
			}
			return
		}
		back, err := parseNodeQuery(q.Values())
		if err != nil || !reflect.DeepEqual(back, q) {
			t.Fatalf("%q: %+v reads back as %+v, %v", s, q, back, err)
		}
	})
}

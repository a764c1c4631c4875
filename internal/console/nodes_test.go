package console

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/store"
	"weft/internal/tstest/storetest"
	"weft/internal/wire"
)

// TestNodesPageReadsOnePage: every view of the nodes table, in every
// order, searched, on any page, asks the store for one page of nodes (at
// most PageSize, and a one-node count with a search), never for every
// node; the page shown is still the right one.
func TestNodesPageReadsOnePage(t *testing.T) {
	const n = 3*PageSize + 7
	var rc *storetest.NodeReads
	e := newEnvWrapped(t, n, func(st store.Store) store.Store { rc = &storetest.NodeReads{Store: st}; return rc })
	cookie := e.signIn()
	all := e.sortedNodes()
	views := []string{"", "?page=3", "?page=999", "?q=secretnode1", "?q=secretnode1&page=2", "?q=nomatch"}
	for k := range sortKeys {
		views = append(views, "?sort="+k, "?sort="+k+"&desc=1&page=2")
	}
	for _, view := range views {
		t.Run(view, func(t *testing.T) {
			rc.Take()
			got := e.nodeNames(t, cookie, view)
			reads := rc.Take()
			if reads.ListAll != 0 {
				t.Fatalf("the view read every node (ListNodes) %d times", reads.ListAll)
			}
			for _, p := range reads.Pages {
				if p.IDs == nil && (p.Limit == 0 || p.Limit > PageSize) || len(p.IDs) > PageSize {
					t.Fatalf("the view asked the store for %+v, more than a page", p)
				}
			}
			if reads.PageRows > 2*PageSize+1 || len(reads.Pages) == 0 {
				t.Fatalf("the view read %d nodes in %d store calls", reads.PageRows, len(reads.Pages))
			}
			if len(got) > PageSize {
				t.Fatalf("%d rows shown", len(got))
			}
		})
	}
	if got := names(bodyOf(t, e.do("GET", "/admin/?page=999", cookie, nil, nil))); !slices.Equal(got, all[3*PageSize:]) {
		t.Fatalf("page past the end shows %v, want the last page %v", head(got), head(all[3*PageSize:]))
	}
	body := bodyOf(t, e.do("GET", "/admin/?q=secretnode1&page=2", cookie, nil, nil))
	if want := fmt.Sprintf("%d of %d nodes · page 2 of 2", len(filter(all, "secretnode1")), n); !strings.Contains(body, want) {
		t.Fatalf("search count: page lacks %q", want)
	}
}

// TestNodesTableOrders: the table's columns sort through the admin API:
// state (the online node, ID 1, last ascending and first descending),
// last seen (nodes seen later after those seen earlier or never), and the
// pager links keep the order and the search.
func TestNodesTableOrders(t *testing.T) {
	e := newEnv(t, 12)
	cookie := e.signIn()
	ctx := context.Background()
	for i, id := range []wire.NodeID{7, 3, 9} {
		at := time.Now().Add(time.Duration(i+1) * time.Hour) // after every registration
		if _, err := e.st.UpdateNodeRuntime(ctx, id, func(r *store.NodeRuntime) { r.LastSeen = at }); err != nil {
			t.Fatal(err)
		}
	}
	get := func(q string) []string { t.Helper(); return e.nodeNames(t, cookie, q) }
	all := e.sortedNodes()
	online := e.nodes[0] // ID 1
	if got := get("?sort=state&desc=1"); got[0] != online || !slices.Equal(got[1:], slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == online })) {
		t.Fatalf("state desc: %v, want %s first, then by name", got, online)
	}
	if got := get("?sort=state"); got[len(got)-1] != online {
		t.Fatalf("state asc: %v, want %s last", got, online)
	}
	got := get("?sort=lastseen&desc=1")
	if want := []string{e.nodes[8], e.nodes[2], e.nodes[6]}; !slices.Equal(got[:3], want) {
		t.Fatalf("last seen desc: %v, want %v first", got, want)
	}
	body := bodyOf(t, e.do("GET", "/admin/?q=secret&sort=os", cookie, nil, nil))
	for _, want := range []string{`href="/admin/?desc=1&amp;q=secret&amp;sort=os"`, `href="/admin/?q=secret&amp;sort=lastseen"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks link %s", want)
		}
	}
}

// routeCounter is a store that records how the admin API read routes.
type routeCounter struct {
	store.Store
	mu      sync.Mutex
	listAll int           // ListRoutes calls: every route of the tailnet read
	perNode []wire.NodeID // ListNodeRoutes calls
}

func (c *routeCounter) ListRoutes(ctx context.Context) ([]store.Route, error) {
	c.mu.Lock()
	c.listAll++
	c.mu.Unlock()
	return c.Store.ListRoutes(ctx)
}

func (c *routeCounter) ListNodeRoutes(ctx context.Context, id wire.NodeID) ([]store.Route, error) {
	c.mu.Lock()
	c.perNode = append(c.perNode, id)
	c.mu.Unlock()
	return c.Store.ListNodeRoutes(ctx, id)
}

// TestNodePageReadsOneNodesRoutes: the node page asks the store for the
// routes of its node alone, never for every route of the tailnet, and
// still shows that node's routes (and not another node's).
func TestNodePageReadsOneNodesRoutes(t *testing.T) {
	var rc *routeCounter
	e := newEnvWrapped(t, 3, func(st store.Store) store.Store { rc = &routeCounter{Store: st}; return rc })
	ctx := context.Background()
	if _, err := e.st.SetAdvertisedRoutes(ctx, 2, []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	cookie := e.signIn()
	for _, tc := range []struct {
		page      string
		id        wire.NodeID
		want, not []string
	}{
		{"/admin/nodes/id:1", 1, []string{"0.0.0.0/0", "::/0"}, []string{"10.2.0.0/16"}},
		{"/admin/nodes/" + e.nodes[1], 2, []string{"10.2.0.0/16"}, []string{"0.0.0.0/0"}},
		{"/admin/nodes/id:3", 3, []string{"This node advertises no routes"}, []string{"0.0.0.0/0", "10.2.0.0/16"}},
	} {
		t.Run(tc.page, func(t *testing.T) {
			rc.mu.Lock()
			rc.listAll, rc.perNode = 0, nil
			rc.mu.Unlock()
			resp := e.do("GET", tc.page, cookie, nil, nil)
			body := bodyOf(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("%d\n%s", resp.StatusCode, body)
			}
			rc.mu.Lock()
			listAll, perNode := rc.listAll, slices.Clone(rc.perNode)
			rc.mu.Unlock()
			if listAll != 0 {
				t.Fatalf("the node page read every route of the tailnet (ListRoutes) %d times", listAll)
			}
			if !slices.Equal(perNode, []wire.NodeID{tc.id}) {
				t.Fatalf("the node page read the routes of nodes %v, want only %d", perNode, tc.id)
			}
			for _, s := range tc.want {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(body, s) {
					t.Errorf("page shows %q, another node's route", s)
				}
			}
		})
	}
}

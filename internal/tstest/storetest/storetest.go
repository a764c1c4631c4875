// Package storetest opens throw-away stores and holds test doubles of
// the store, for tests of the packages that use it (the admin API, the
// console, the control server, the login flows).
package storetest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"weft/internal/store"
	"weft/internal/wire"
)

// NodeReads is a store that records how nodes were read, so that a test
// can tell that a page of nodes never read every node. Its zero value
// with Store set is ready to use; it is safe for concurrent use.
type NodeReads struct {
	store.Store

	mu     sync.Mutex
	counts NodeReadCounts
}

// NodeReadCounts is what a NodeReads recorded.
type NodeReadCounts struct {
	ListAll  int              // ListNodes calls: every node read
	Pages    []store.NodePage // ListNodesPage queries, in order
	PageRows int              // nodes ListNodesPage returned, in all
	IDLists  int              // ListNodeIDs calls
}

// ListNodes counts the call and reads every node.
func (c *NodeReads) ListNodes(ctx context.Context) ([]store.Node, error) {
	c.mu.Lock()
	c.counts.ListAll++
	c.mu.Unlock()
	return c.Store.ListNodes(ctx)
}

// ListNodesPage records the query and how many nodes it returned.
func (c *NodeReads) ListNodesPage(ctx context.Context, q store.NodePage) (store.NodeList, error) {
	l, err := c.Store.ListNodesPage(ctx, q)
	c.mu.Lock()
	c.counts.Pages = append(c.counts.Pages, q)
	c.counts.PageRows += len(l.Nodes)
	c.mu.Unlock()
	return l, err
}

// ListNodeIDs counts the call and reads the IDs.
func (c *NodeReads) ListNodeIDs(ctx context.Context, q store.NodePage) ([]wire.NodeID, error) {
	c.mu.Lock()
	c.counts.IDLists++
	c.mu.Unlock()
	return c.Store.ListNodeIDs(ctx, q)
}

// Counts returns what was recorded so far.
func (c *NodeReads) Counts() NodeReadCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.counts
	n.Pages = append([]store.NodePage(nil), n.Pages...)
	return n
}

// Take returns what was recorded and forgets it.
func (c *NodeReads) Take() NodeReadCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.counts
	c.counts = NodeReadCounts{}
	return n
}

// Open opens a SQLite store at path, or at a fresh file in a temporary
// directory when path is "", creates users (as members), and closes the
// store when the test ends. Any error fails t.
func Open(t testing.TB, path string, opts store.Options, users ...string) store.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "weft.db")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range users {
		if _, err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

package control

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/changefeed"
	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tstest/storetest"
	"weft/internal/wire"
)

// countingStore counts the node reads a server makes, and can hold the
// next GetNodes until released, so that a test can let events pile up
// behind it.
type countingStore struct {
	store.Store
	getNode  atomic.Int64
	getNodes atomic.Int64

	mu     sync.Mutex
	sizes  []int         // IDs asked for in each GetNodes
	hold   chan struct{} // when set, the next GetNodes waits for it to close
	inHold chan struct{} // closed when that GetNodes is waiting
}

func (c *countingStore) GetNode(ctx context.Context, id wire.NodeID) (store.Node, error) {
	c.getNode.Add(1)
	return c.Store.GetNode(ctx, id)
}

func (c *countingStore) GetNodes(ctx context.Context, ids []wire.NodeID) ([]store.Node, error) {
	c.getNodes.Add(1)
	c.mu.Lock()
	c.sizes = append(c.sizes, len(ids))
	hold, inHold := c.hold, c.inHold
	c.hold, c.inHold = nil, nil
	c.mu.Unlock()
	if hold != nil {
		close(inHold)
		<-hold
	}
	return c.Store.GetNodes(ctx, ids)
}

// holdNext makes the next GetNodes wait until the returned release is
// called; waiting is closed once it waits.
func (c *countingStore) holdNext() (waiting <-chan struct{}, release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hold := make(chan struct{})
	c.hold, c.inHold = hold, make(chan struct{})
	return c.inHold, sync.OnceFunc(func() { close(hold) })
}

// registerNodes registers n nodes into st, one at a time (the store
// takes its writes one at a time anyway; more at once only wait for
// SQLite's lock, past its timeout on a loaded machine).
func registerNodes(t *testing.T, st store.Store, n int) []wire.NodeID {
	t.Helper()
	ctx := context.Background()
	secret, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]wire.NodeID, n)
	for i := range n {
		name := fmt.Sprintf("node%d", i)
		nd, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), DiscoKey: key.NewDisco().Public(), Hostname: name,
			Hostinfo: &wire.Hostinfo{Hostname: name, OS: "linux"}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = nd.ID
	}
	return ids
}

// setEndpoint writes a runtime change for id into st, as the server
// streaming the node would.
func setEndpoint(t *testing.T, st store.Store, id wire.NodeID, port uint16) {
	t.Helper()
	_, err := st.UpdateNodeRuntime(context.Background(), id, func(r *store.NodeRuntime) {
		r.Endpoints = []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), port)}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mapperState is what a server holds of every node, for comparing two
// servers: the record as it would be sent (its last-seen time left out,
// see TestBatchEqualsOneByOne) and which server it streams at.
func mapperState(m *mapper) map[wire.NodeID]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[wire.NodeID]string{}
	for id, e := range m.nodes {
		n := e.n
		n.LastSeen = time.Time{}
		b, _ := json.Marshal(&n)
		out[id] = string(b) + " at " + e.remoteAt
	}
	return out
}

// storeState is the records st holds, as a server loading them afresh
// would hold them.
func storeState(t *testing.T, st store.Store) map[wire.NodeID]string {
	t.Helper()
	all, err := st.ListNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[wire.NodeID]string{}
	for i := range all {
		n := all[i].Wire()
		n.LastSeen = time.Time{}
		b, _ := json.Marshal(&n)
		out[all[i].ID] = string(b) + " at "
	}
	return out
}

// TestFeedBurstOneRead: a burst of 1,000 runtime events from another
// server, one node each (250 nodes, each named four times), that piles up
// while the receiver is busy is applied with one GetNodes of the 250 IDs
// (not 1,000 GetNode calls, as applying one event at a time did) and one
// fan-out round, and leaves the receiver holding what the store holds.
func TestFeedBurstOneRead(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "", store.Options{}, "alice")
	const n, events = 250, 1000
	ids := registerNodes(t, st, n)
	cs := &countingStore{Store: st}
	hub := changefeed.NewHub()
	srv, err := New(ctx, Config{Store: cs, Key: key.NewMachine(), Feed: hub.Feed(), BatchWindow: 5 * time.Millisecond, RegisterRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	other := hub.Feed() // the other server

	// The other server changed every tenth node's endpoints.
	for i := 0; i < n; i += 10 {
		setEndpoint(t, st, ids[i], uint16(1000+i))
	}
	// A first event makes the receiver read, and hold there while the
	// burst comes, one event per node as a server publishing often
	// would.
	waiting, release := cs.holdNext()
	defer release()
	// (ids[1] did not change: its read sends nothing.)
	if err := other.Publish(ctx, changefeed.Event{Kind: changefeed.KindNode, Nodes: ids[1:2]}); err != nil {
		t.Fatal(err)
	}
	<-waiting
	srv.m.mu.Lock()
	seq0 := srv.m.seq
	srv.m.mu.Unlock()
	events0 := srv.feedStats.events.Load()
	for i := range events {
		id := ids[i%n]
		if err := other.Publish(ctx, changefeed.Event{Kind: changefeed.KindRuntime, Nodes: []wire.NodeID{id}}); err != nil {
			t.Fatal(err)
		}
	}
	release()
	deadline := time.Now().Add(time.Minute)
	for srv.feedStats.events.Load() < events0+events+1 || srv.m.pendingFlush() {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute the server applied %d of %d events", srv.feedStats.events.Load()-events0, events+1)
		}
		time.Sleep(5 * time.Millisecond)
	}

	cs.mu.Lock()
	sizes := slices.Clone(cs.sizes)
	cs.mu.Unlock()
	if got := cs.getNode.Load(); got != 0 {
		t.Errorf("%d GetNode calls; the feed should re-read nodes only in batches", got)
	}
	if !slices.Equal(sizes, []int{1, n}) {
		t.Errorf("GetNodes asked for %v IDs, want [1 %d]: the held read, then the whole burst's nodes in one", sizes, n)
	}
	srv.m.mu.Lock()
	rounds := srv.m.seq - seq0
	srv.m.mu.Unlock()
	if rounds != 1 {
		t.Errorf("the burst went out in %d fan-out rounds, want 1", rounds)
	}
	want, got := storeState(t, st), mapperState(srv.m)
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("node %d: server holds\n%s\nstore has\n%s", id, got[id], w)
		}
	}
}

// pendingFlush reports whether changes wait for a flush.
func (m *mapper) pendingFlush() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flushing || len(m.dirty) > 0
}

// TestBatchOrder: what a batch does where the order of its events
// matters, table-driven; every case is also applied one event at a time
// on a second server, and both must end the same.
func TestBatchOrder(t *testing.T) {
	const o1, o2 = "origin1", "origin2"
	ev := func(kind changefeed.Kind, origin string, ids ...wire.NodeID) changefeed.Event {
		e := changefeed.Event{Version: changefeed.Version, Origin: origin, Kind: kind, Nodes: ids}
		if kind == changefeed.KindGone {
			e.Nodes, e.Server = nil, origin
		}
		return e
	}
	const live, deleted = 1, 2 // indexes into the nodes registered
	for _, tt := range []struct {
		name       string
		evs        func(live, deleted wire.NodeID) []changefeed.Event
		wantGone   bool   // the deleted node is gone from the server
		wantOnline string // where the live node streams after
	}{
		{"removed after node still removes", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindNode, o1, d), ev(changefeed.KindRemoved, o1, d)}
		}, true, ""},
		{"node after removed does not bring it back", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindRemoved, o1, d), ev(changefeed.KindRuntime, o1, d)}
		}, true, ""},
		{"node of a deleted node removes it", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindRuntime, o1, d, l)}
		}, true, ""},
		{"online then offline", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindOnline, o1, l), ev(changefeed.KindRuntime, o1, l), ev(changefeed.KindOffline, o1, l)}
		}, false, ""},
		{"offline then online", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindOffline, o1, l), ev(changefeed.KindRuntime, o1, l), ev(changefeed.KindOnline, o1, l)}
		}, false, o1},
		{"moved server: the old one's offline is old news", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindOnline, o1, l), ev(changefeed.KindOnline, o2, l), ev(changefeed.KindOffline, o1, l)}
		}, false, o2},
		{"gone after online", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindOnline, o1, l), ev(changefeed.KindGone, o1)}
		}, false, ""},
		{"online after gone", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindGone, o1), ev(changefeed.KindOnline, o1, l)}
		}, false, o1},
		{"resync in between", func(l, d wire.NodeID) []changefeed.Event {
			return []changefeed.Event{ev(changefeed.KindOnline, o1, l), {Version: changefeed.Version, Kind: changefeed.KindResync},
				ev(changefeed.KindRuntime, o1, l)}
		}, true, o1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, batch, single, ids := newOrderPair(t, 3)
			l, d := ids[live], ids[deleted]
			setEndpoint(t, st, l, 4242)
			if err := st.DeleteNode(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			evs := tt.evs(l, d)
			batch.applyEvents(evs)
			for _, e := range evs {
				single.applyEvents([]changefeed.Event{e})
			}
			for _, srv := range []*Server{batch, single} {
				srv.m.mu.Lock()
				el, ed := srv.m.nodes[l], srv.m.nodes[d]
				srv.m.mu.Unlock()
				if (ed == nil) != tt.wantGone || el == nil || el.remoteAt != tt.wantOnline || el.n.Online != (tt.wantOnline != "") {
					t.Fatalf("deleted node held: %v, want %v; live node at %q (online %v), want %q", ed != nil, !tt.wantGone, el.remoteAt, el.n.Online, tt.wantOnline)
				}
			}
			if b, s := mapperState(batch.m), mapperState(single.m); !mapsEqual(b, s) {
				t.Fatalf("applied as a batch\n%v\none by one\n%v", b, s)
			}
		})
	}
}

// TestBatchEqualsOneByOne: random sequences of 60 events, applied as one
// batch on one server and one event at a time on another, leave both
// holding the same nodes with the same records and online states. (Last
// seen times are left out: a batch applies re-reads before stream
// changes, so a node going offline keeps the time this server saw it go,
// where one by one a later re-read may put the stored time back.)
func TestBatchEqualsOneByOne(t *testing.T) {
	const nodes = 6
	origins := []string{"origin1", "origin2"}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 18))
			st, batch, single, ids := newOrderPair(t, nodes)
			// The other servers' changes, all in the store before
			// their events arrive (events follow their commits).
			var deleted []wire.NodeID
			for _, id := range ids {
				switch rng.IntN(4) {
				case 0:
					if err := st.DeleteNode(context.Background(), id); err != nil {
						t.Fatal(err)
					}
					deleted = append(deleted, id)
				case 1:
					setEndpoint(t, st, id, uint16(2000+rng.IntN(1000)))
				}
			}
			pick := func() []wire.NodeID {
				var out []wire.NodeID
				for _, id := range ids {
					if rng.IntN(3) == 0 {
						out = append(out, id)
					}
				}
				if len(out) == 0 {
					out = ids[:1]
				}
				return out
			}
			var evs []changefeed.Event
			for range 60 {
				origin := origins[rng.IntN(2)]
				e := changefeed.Event{Version: changefeed.Version, Origin: origin}
				switch k := rng.IntN(10); {
				case k < 3:
					e.Kind, e.Nodes = changefeed.KindRuntime, pick()
				case k < 4:
					e.Kind, e.Nodes = changefeed.KindNode, pick()
				case k < 5 && len(deleted) > 0:
					e.Kind, e.Nodes = changefeed.KindRemoved, deleted[:1+rng.IntN(len(deleted))]
				case k < 7:
					e.Kind, e.Nodes = changefeed.KindOnline, pick()
				case k < 9:
					e.Kind, e.Nodes = changefeed.KindOffline, pick()
				default:
					e.Kind, e.Server = changefeed.KindGone, origins[rng.IntN(2)]
				}
				evs = append(evs, e)
			}
			batch.applyEvents(evs)
			for _, e := range evs {
				single.applyEvents([]changefeed.Event{e})
			}
			if b, s := mapperState(batch.m), mapperState(single.m); !mapsEqual(b, s) {
				t.Fatalf("events %+v\napplied as a batch\n%v\none by one\n%v", evs, b, s)
			}
		})
	}
}

func mapsEqual(a, b map[wire.NodeID]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// newOrderPair returns a store with n nodes and two servers on it, each
// with a feed of its own (so that only the test applies events to
// them), on a clock that stands still.
func newOrderPair(t *testing.T, n int) (store.Store, *Server, *Server, []wire.NodeID) {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t, "", store.Options{}, "alice")
	ids := registerNodes(t, st, n)
	now := time.Now()
	var srvs []*Server
	for range 2 {
		srv, err := New(ctx, Config{Store: st, Key: key.NewMachine(), BatchWindow: 5 * time.Millisecond, RegisterRate: -1,
			Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		srvs = append(srvs, srv)
	}
	return st, srvs[0], srvs[1], ids
}

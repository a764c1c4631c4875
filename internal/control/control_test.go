package control

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

func TestRegisterRefusals(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	oneOff := h.authKey(store.AuthKeyRequest{})
	h.newSim("first").mustRegister(t, oneOff)
	expired := h.authKey(store.AuthKeyRequest{Reusable: true})
	if err := h.st.ExpireAuthKey(ctx, expired); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  string
		want wire.ErrorCode
	}{
		{"invalid key", "wk-no-such-key", wire.CodeInvalidKey},
		{"expired key", expired, wire.CodeExpiredKey},
		{"key already used", oneOff, wire.CodeKeyUsed},
		{"unknown machine without key", "", wire.CodeAuthRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := h.newSim("x").register(ctx, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Error == nil || resp.Error.Code != tt.want {
				t.Fatalf("response = %+v, want error %s", resp, tt.want)
			}
			if resp.Error.Message == "" {
				t.Error("refusal has no message for people")
			}
		})
	}
}

func TestConcurrentOneOffKey(t *testing.T) {
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{})
	var wg sync.WaitGroup
	results := make([]*wire.RegisterResponse, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.newSim(fmt.Sprint("n", i)).register(context.Background(), k)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		if r != nil && r.Node != nil {
			ok++
		} else if r != nil && r.Error.Code != wire.CodeKeyUsed {
			t.Errorf("loser got %v, want key_used", r.Error)
		}
	}
	if ok != 1 {
		t.Fatalf("%d registrations won with one one-off key, want exactly 1", ok)
	}
}

func TestReRegisterAndRotateKeepIdentity(t *testing.T) {
	h := newHarness(t, nil)
	n := h.newSim("busan")
	n.mustRegister(t, h.authKey(store.AuthKeyRequest{Reusable: true}))
	first := n.self
	// Same machine, same key, no auth key: accepted as is.
	n.mustRegister(t, "")
	if n.self.ID != first.ID {
		t.Fatalf("re-register changed ID %d -> %d", first.ID, n.self.ID)
	}
	// Rotation: new node key, no auth key.
	old := n.node.Public()
	n.node = newNodeKey()
	resp, err := n.register(context.Background(), "")
	if err != nil || resp.Error != nil {
		t.Fatalf("rotate: %v %v", err, resp.Error)
	}
	got := resp.Node
	if got.ID != first.ID || got.Name != first.Name || !slices.Equal(got.Addresses, first.Addresses) {
		t.Errorf("rotation changed identity: %+v -> %+v", first, got)
	}
	if got.NodeKey == old || got.NodeKey != n.node.Public() {
		t.Errorf("node key after rotation = %v", got.NodeKey)
	}
}

func TestRegisterRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RegisterRate = 0.001; c.RegisterBurst = 3 })
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	var codes []wire.ErrorCode
	for i := range 5 {
		resp, err := h.newSim(fmt.Sprint("n", i)).register(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		var c wire.ErrorCode
		if resp.Error != nil {
			c = resp.Error.Code
		}
		codes = append(codes, c)
	}
	want := []wire.ErrorCode{"", "", "", wire.CodeRateLimited, wire.CodeRateLimited}
	if !slices.Equal(codes, want) {
		t.Fatalf("codes = %q, want %q", codes, want)
	}
}

// TestManyNodes connects 50 nodes over real Noise channels and checks
// that the maps converge and that each change reaches every other node as
// exactly one small delta.
func TestManyNodes(t *testing.T) {
	const N = 50
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	nodes := make([]*simNode, N)
	for i := range nodes {
		nodes[i] = h.newSim(fmt.Sprintf("node%d", i))
		nodes[i].mustRegister(t, k)
		t.Cleanup(nodes[i].close)
	}
	ctx := context.Background()
	maps := make([]*mapState, N)
	for i, n := range nodes {
		if err := n.stream(ctx, fmt.Sprintf("192.0.2.%d:41641", i+1)); err != nil {
			t.Fatal(err)
		}
		maps[i] = &mapState{}
	}
	// Every node converges on seeing the N-1 others online.
	for i, n := range nodes {
		for !maps[i].allOnline(N - 1) {
			maps[i].apply(t, n.next(t))
		}
	}
	// Drain anything still in flight, then let one node change endpoints.
	time.Sleep(100 * time.Millisecond)
	for _, n := range nodes {
		for len(n.msgs) > 0 {
			<-n.msgs
		}
	}
	changer := nodes[7]
	eps := []netipAddrPort{mustAddrPort("198.51.100.7:1234")}
	if err := changer.sendUpdate(&wire.Update{Endpoints: &eps, HomeRegion: 2}); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if n == changer {
			continue
		}
		r := n.next(t)
		if r.Full || len(r.PeersChanged) != 0 || len(r.PeersRemoved) != 0 || len(r.PeersPatched) != 1 {
			t.Fatalf("node %d got %+v, want one patch", i, r)
		}
		p := r.PeersPatched[0]
		if p.ID != changer.self.ID || p.Endpoints == nil || !slices.Equal(*p.Endpoints, eps) || p.HomeRegion == nil || *p.HomeRegion != 2 {
			t.Fatalf("node %d got patch %+v", i, p)
		}
	}
	changer.expectQuiet(t, 50*time.Millisecond)

	// One node disconnects: the others see it offline.
	gone := nodes[3]
	gone.close()
	for i, n := range nodes {
		if n == gone {
			continue
		}
		r := n.next(t)
		if len(r.PeersPatched) != 1 || r.PeersPatched[0].ID != gone.self.ID || r.PeersPatched[0].Online == nil || *r.PeersPatched[0].Online {
			t.Fatalf("node %d got %+v, want offline patch for %d", i, r, gone.self.ID)
		}
		if r.PeersPatched[0].LastSeen == nil || r.PeersPatched[0].LastSeen.IsZero() {
			t.Errorf("offline patch has no last seen")
		}
	}
	// It reconnects and resumes with a full map, and is online again
	// for the others.
	gone.msgs = nil
	if err := gone.stream(ctx); err != nil {
		t.Fatal(err)
	}
	full := gone.next(t)
	if !full.Full || len(full.Peers) != N-1 || full.Self.ID != gone.self.ID {
		t.Fatalf("resume: full=%v peers=%d", full.Full, len(full.Peers))
	}
	for i, n := range nodes {
		if n == gone {
			continue
		}
		r := n.next(t)
		if len(r.PeersPatched) != 1 || r.PeersPatched[0].Online == nil || !*r.PeersPatched[0].Online {
			t.Fatalf("node %d got %+v, want online patch", i, r)
		}
	}
}

// mapState tracks which peers a sim node sees online.
type mapState struct {
	online map[wire.NodeID]bool
	seq    uint64
}

func (m *mapState) apply(t testing.TB, r *wire.MapResponse) {
	t.Helper()
	if r.Seq < m.seq {
		t.Fatalf("seq went back from %d to %d", m.seq, r.Seq)
	}
	m.seq = r.Seq
	if r.Full {
		m.online = map[wire.NodeID]bool{}
		for _, p := range r.Peers {
			m.online[p.ID] = p.Online
		}
	}
	for _, p := range r.PeersChanged {
		m.online[p.ID] = p.Online
	}
	for _, p := range r.PeersPatched {
		if p.Online != nil {
			m.online[p.ID] = *p.Online
		}
	}
	for _, id := range r.PeersRemoved {
		delete(m.online, id)
	}
}

func (m *mapState) allOnline(n int) bool {
	c := 0
	for _, on := range m.online {
		if on {
			c++
		}
	}
	return c == n
}

func TestNewStreamReplacesOld(t *testing.T) {
	h := newHarness(t, nil)
	n := h.newSim("a")
	n.mustRegister(t, h.authKey(store.AuthKeyRequest{}))
	ctx := context.Background()
	if err := n.stream(ctx); err != nil {
		t.Fatal(err)
	}
	n.next(t)
	oldErr := n.errc
	oldConn := n.conn
	defer oldConn.Close()
	// The new stream gets a channel of its own: a delta the old stream
	// read before it closed must not pass for the new stream's first.
	n.msgs = nil
	if err := n.stream(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-oldErr:
	case <-time.After(5 * time.Second):
		t.Fatal("old stream still open after a new one started")
	}
	if r := n.next(t); !r.Full {
		t.Fatalf("new stream began with %+v", r)
	}
}

func TestBadInputClosesOnlyThatChannel(t *testing.T) {
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	good := h.newSim("good")
	good.mustRegister(t, k)
	ctx := context.Background()
	if err := good.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer good.close()
	good.next(t)
	tests := []struct {
		name string
		send []byte
	}{
		{"oversized message", binary.BigEndian.AppendUint32([]byte{byte(wire.MsgUpdate)}, wire.MaxNodeMessage+1)},
		{"unknown type", wire.AppendMessage(nil, 42, nil)},
		{"bad json", wire.AppendMessage(nil, wire.MsgMapRequest, []byte("{"))},
		{"update before map request", wire.AppendMessage(nil, wire.MsgUpdate, []byte(`{"home_region":1}`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := h.newSim("bad")
			c, err := bad.dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tt.send)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				_, _, err := wire.ReadMessage(c, wire.MaxServerMessage)
				if err != nil {
					break // closed by the server, possibly after an Error
				}
			}
			// The good node's stream is untouched and still updates.
			eps := []netipAddrPort{mustAddrPort("192.0.2.9:9")}
			if err := good.sendUpdate(&wire.Update{Endpoints: &eps, HomeRegion: -1}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-good.errc:
				t.Fatalf("good stream ended: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

func TestAdminChangesReachNodes(t *testing.T) {
	h := newHarness(t, nil)
	nodes := h.streamingNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	a.next(t)
	b.next(t)
	drain := func() {
		time.Sleep(50 * time.Millisecond)
		for _, n := range []*simNode{a, b} {
			for len(n.msgs) > 0 {
				<-n.msgs
			}
		}
	}
	drain()
	if _, err := h.st.RenameNode(ctx, b.self.ID, "renamed"); err != nil {
		t.Fatal(err)
	}
	h.srv.NodeChanged(b.self.ID)
	if r := a.next(t); len(r.PeersChanged) != 1 || r.PeersChanged[0].Name != "renamed" {
		t.Fatalf("peer got %+v, want the renamed record", r)
	}
	if r := b.next(t); r.Self == nil || r.Self.Name != "renamed" {
		t.Fatalf("renamed node got %+v, want its new self", r)
	}
	if err := h.st.DeleteNode(ctx, b.self.ID); err != nil {
		t.Fatal(err)
	}
	h.srv.NodeRemoved(b.self.ID)
	if r := a.next(t); !slices.Equal(r.PeersRemoved, []wire.NodeID{b.self.ID}) {
		t.Fatalf("peer got %+v, want removal", r)
	}
	select {
	case err := <-b.errc:
		em, ok := err.(*wire.ErrorMessage)
		if !ok || em.Code != wire.CodeNotRegistered {
			t.Fatalf("deleted node's stream ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deleted node's stream stayed open")
	}
}

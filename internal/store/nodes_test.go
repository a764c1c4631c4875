package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/wire"
)

func TestNodeNames(t *testing.T) { forEachStore(t, testNodeNames) }

func testNodeNames(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
	long := "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghi" // sanitises to 63 characters
	for _, tt := range []struct{ hostname, want string }{
		{"busan", "busan"},
		{"busan", "busan-2"},
		{"Busan", "busan-3"},
		{"busan.local", "busan-4"},
		{"My Laptop", "my-laptop"},
		{"my laptop", "my-laptop-2"},
		{"", "node"},
		{"!!!", "node-2"},
		{"busan-2", "busan-2-2"},
		{long, long[:63]},
		{long, long[:61] + "-2"},
	} {
		t.Run(tt.hostname, func(t *testing.T) {
			if n := f.register(k, tt.hostname); n.Name != tt.want {
				t.Fatalf("name %q, want %q", n.Name, tt.want)
			}
		})
	}
	t.Run("rename", func(t *testing.T) {
		n, _ := f.s.GetNodeByName(ctx, "busan-4")
		if _, err := f.s.RenameNode(ctx, n.ID, "busan"); !errors.Is(err, ErrExists) {
			t.Fatalf("rename onto an existing name = %v", err)
		}
		for _, bad := range []string{"", "Busan", "-x", "x-", "a.b", long + "x"} {
			if _, err := f.s.RenameNode(ctx, n.ID, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("rename to %q = %v, want ErrInvalid", bad, err)
			}
		}
		got, err := f.s.RenameNode(ctx, n.ID, "jeju")
		if err != nil || got.Name != "jeju" {
			t.Fatalf("rename = %q, %v", got.Name, err)
		}
		if _, err := f.s.RenameNode(ctx, n.ID, "jeju"); err != nil {
			t.Fatalf("rename to own name = %v", err)
		}
		// The freed name is handed out again.
		if n := f.register(k, "busan"); n.Name != "busan-4" {
			t.Fatalf("name %q, want busan-4", n.Name)
		}
	})
}

func TestAllocation(t *testing.T) { forEachStore(t, testAllocation) }

func testAllocation(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
	v4p, v6p := f.s.AddressPrefixes()
	if v4p != netip.MustParsePrefix("100.64.0.0/10") || v6p.Bits() != 48 || v6p.Addr().As16()[0] != 0xfd {
		t.Fatalf("prefixes %v %v", v4p, v6p)
	}
	const count = 3000
	seen := make(map[netip.Addr]wire.NodeID)
	for i := range count {
		n := f.register(k, fmt.Sprintf("n%d", i%50))
		for _, a := range []netip.Addr{n.IPv4, n.IPv6} {
			if other, dup := seen[a]; dup {
				t.Fatalf("node %d got %v, already node %d's", n.ID, a, other)
			}
			seen[a] = n.ID
		}
		if !v4p.Contains(n.IPv4) || !v6p.Contains(n.IPv6) {
			t.Fatalf("node %d: %v %v outside %v %v", i, n.IPv4, n.IPv6, v4p, v6p)
		}
		if last := n.IPv4.As4()[3]; last == 0 || last == 255 {
			t.Fatalf("node %d got %v", i, n.IPv4)
		}
	}
	before, err := f.s.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if _, v6 := f.s.AddressPrefixes(); v6 != v6p {
		t.Fatalf("ULA prefix changed across reopen: %v, was %v", v6, v6p)
	}
	after, err := f.s.ListNodes(ctx)
	if err != nil || len(after) != count {
		t.Fatalf("after reopen: %d nodes, %v", len(after), err)
	}
	for i := range before {
		if before[i].IPv4 != after[i].IPv4 || before[i].IPv6 != after[i].IPv6 || before[i].Name != after[i].Name {
			t.Fatalf("node %d changed across reopen: %v/%v -> %v/%v", before[i].ID,
				before[i].IPv4, before[i].Name, after[i].IPv4, after[i].Name)
		}
	}
	// A new node after reopen gets a fresh address; a deleted node's
	// address is not handed out next.
	if err := f.s.DeleteNode(ctx, before[0].ID); err != nil {
		t.Fatal(err)
	}
	n := f.register(k, "n")
	if _, dup := seen[n.IPv4]; dup {
		t.Fatalf("new node after reopen got used address %v", n.IPv4)
	}
}

func TestAddressSkips(t *testing.T) {
	for _, tt := range []struct {
		i    uint32
		want string
		ok   bool
	}{
		{0, "100.64.0.0", false},
		{1, "100.64.0.1", true},
		{255, "100.64.0.255", false},
		{256, "100.64.1.0", false},
		{257, "100.64.1.1", true},
		{36<<16 | 100<<8 | 100, "100.100.100.100", false},
		{v4Count - 1, "100.127.255.255", false},
		{v4Count + 1, "100.64.0.1", true},
	} {
		t.Run(tt.want, func(t *testing.T) {
			a, ok := v4At(tt.i)
			if a.String() != tt.want || ok != tt.ok {
				t.Fatalf("v4At(%d) = %v, %v; want %v, %v", tt.i, a, ok, tt.want, tt.ok)
			}
		})
	}
	ula := netip.MustParsePrefix("fd12:3456:789a::/48")
	if got := v6For(ula, netip.MustParseAddr("100.64.0.1")); got != netip.MustParseAddr("fd12:3456:789a::6440:1") {
		t.Fatalf("v6For = %v", got)
	}
}

func TestReRegistration(t *testing.T) { forEachStore(t, testReRegistration) }

func testReRegistration(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	f.user("bob")
	m := newMachine()
	n1, err := f.s.Register(ctx, m.req(f.key(AuthKeyRequest{User: "alice"}), "busan"))
	if err != nil {
		t.Fatal(err)
	}
	f.register(f.key(AuthKeyRequest{User: "alice"}), "other")
	if want := f.clock.Now().Add(DefaultNodeKeyLifetime); !n1.KeyExpiry.Equal(want) || n1.User != "alice" {
		t.Fatalf("new node: expiry %v user %q", n1.KeyExpiry, n1.User)
	}

	f.clock.Advance(time.Hour)
	m.nk, m.dk = key.NewNode().Public(), key.NewDisco().Public()
	req := m.req(f.key(AuthKeyRequest{User: "bob", Tags: []string{"tag:exit"}}), "renamed-host")
	n2, err := f.s.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if n2.ID != n1.ID || n2.Name != "busan" || n2.IPv4 != n1.IPv4 || n2.IPv6 != n1.IPv6 {
		t.Fatalf("re-registration changed identity: %+v -> %+v", n1, n2)
	}
	if n2.NodeKey != m.nk || n2.DiscoKey != m.dk || n2.Hostname != "renamed-host" {
		t.Fatalf("re-registration kept old keys/hostname: %+v", n2)
	}
	if n2.User != "" || len(n2.Tags) != 1 || n2.Tags[0] != "tag:exit" || !n2.KeyExpiry.IsZero() {
		t.Fatalf("tagged re-registration: user %q tags %v expiry %v", n2.User, n2.Tags, n2.KeyExpiry)
	}
	if got, err := f.s.GetNodeByNodeKey(ctx, m.nk); err != nil || got.ID != n1.ID {
		t.Fatalf("GetNodeByNodeKey = %v, %v", got.ID, err)
	}
	if got, err := f.s.GetNodeByMachineKey(ctx, m.mk); err != nil || got.ID != n1.ID {
		t.Fatalf("GetNodeByMachineKey = %v, %v", got.ID, err)
	}

	t.Run("node key of another machine", func(t *testing.T) {
		other := newMachine()
		other.nk = m.nk
		_, err := f.s.Register(ctx, other.req(f.key(AuthKeyRequest{User: "alice"}), "thief"))
		if !errors.Is(err, ErrExists) {
			t.Fatalf("Register with another node's key = %v, want ErrExists", err)
		}
	})
	t.Run("custom key lifetime", func(t *testing.T) {
		r := newMachine().req(f.key(AuthKeyRequest{User: "alice"}), "short")
		r.KeyLifetime = 24 * time.Hour
		n, err := f.s.Register(ctx, r)
		if err != nil || !n.KeyExpiry.Equal(f.clock.Now().Add(24*time.Hour)) {
			t.Fatalf("expiry %v, %v", n.KeyExpiry, err)
		}
	})
	t.Run("ephemeral", func(t *testing.T) {
		n := f.register(f.key(AuthKeyRequest{User: "alice", Ephemeral: true}), "ci")
		if !n.Ephemeral {
			t.Fatal("node from an ephemeral key is not ephemeral")
		}
	})
}

func TestRotateNodeKey(t *testing.T) { forEachStore(t, testRotateNodeKey) }

func testRotateNodeKey(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	n := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	other := f.register(f.key(AuthKeyRequest{User: "alice"}), "pc")
	nk := key.NewNode().Public()
	got, err := f.s.RotateNodeKey(ctx, n.ID, nk)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeKey != nk || got.ID != n.ID || got.Name != n.Name || got.IPv4 != n.IPv4 || !got.KeyExpiry.Equal(n.KeyExpiry) {
		t.Fatalf("rotation: %+v -> %+v", n, got)
	}
	if _, err := f.s.GetNodeByNodeKey(ctx, n.NodeKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old node key still found: %v", err)
	}
	if _, err := f.s.RotateNodeKey(ctx, n.ID, other.NodeKey); !errors.Is(err, ErrExists) {
		t.Fatalf("rotating onto another node's key = %v", err)
	}
	if _, err := f.s.RotateNodeKey(ctx, 999, key.NewNode().Public()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotating unknown node = %v", err)
	}
}

func TestExpireNode(t *testing.T) { forEachStore(t, testExpireNode) }

func testExpireNode(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	n := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	if n.KeyExpired(f.clock.Now()) {
		t.Fatal("new node expired")
	}
	got, err := f.s.ExpireNode(ctx, n.ID)
	if err != nil || !got.KeyExpired(f.clock.Now()) {
		t.Fatalf("ExpireNode: %v %v", got.KeyExpiry, err)
	}
	f.clock.Advance(time.Minute)
	again, _ := f.s.ExpireNode(ctx, n.ID)
	if !again.KeyExpiry.Equal(got.KeyExpiry) {
		t.Fatalf("second ExpireNode moved expiry from %v to %v", got.KeyExpiry, again.KeyExpiry)
	}
}

func TestUpdateNodeRuntime(t *testing.T) { forEachStore(t, testUpdateNodeRuntime) }

func testUpdateNodeRuntime(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	n := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	dk := key.NewDisco().Public()
	eps := []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:41641"), netip.MustParseAddrPort("[2001:db8::1]:41641")}
	seen := f.clock.Now().Add(time.Minute)
	_, err := f.s.UpdateNodeRuntime(ctx, n.ID, func(r *NodeRuntime) {
		r.DiscoKey = dk
		r.Endpoints = eps
		r.HomeRegion = 3
		r.LastSeen = seen
		r.Hostinfo = &wire.Hostinfo{Hostname: "busan", OS: "windows", NetInfo: &wire.NetInfo{UDP: true, PreferredRegion: 3}}
	})
	if err != nil {
		t.Fatal(err)
	}
	f.reopen()
	got, err := f.s.GetNode(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.DiscoKey != dk || len(got.Endpoints) != 2 || got.Endpoints[1] != eps[1] || got.HomeRegion != 3 ||
		!got.LastSeen.Equal(seen) || got.OS != "windows" || got.Hostinfo.NetInfo.PreferredRegion != 3 {
		t.Fatalf("runtime not kept: %+v", got)
	}
	// fn sees the current values.
	_, err = f.s.UpdateNodeRuntime(ctx, n.ID, func(r *NodeRuntime) {
		if r.HomeRegion != 3 || len(r.Endpoints) != 2 {
			t.Errorf("fn saw %+v", r)
		}
		r.Endpoints = nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.s.GetNode(ctx, n.ID); len(got.Endpoints) != 0 || got.DiscoKey != dk {
		t.Fatalf("after clearing endpoints: %+v", got)
	}
	if _, err := f.s.UpdateNodeRuntime(ctx, 999, func(*NodeRuntime) {}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown node = %v", err)
	}
}

func TestRegisterIsAtomic(t *testing.T) { forEachStore(t, testRegisterIsAtomic) }

func testRegisterIsAtomic(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	first := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	k := f.key(AuthKeyRequest{User: "alice"})
	thief := newMachine()
	thief.nk = first.NodeKey
	if _, err := f.s.Register(ctx, thief.req(k, "thief")); !errors.Is(err, ErrExists) {
		t.Fatalf("Register with a taken node key = %v", err)
	}
	keys, _ := f.s.ListAuthKeys(ctx, "alice")
	if last := keys[len(keys)-1]; last.Uses != 0 {
		t.Fatalf("failed registration used the key: %+v", last)
	}
	if nodes, _ := f.s.ListNodes(ctx); len(nodes) != 1 {
		t.Fatalf("%d nodes after a failed registration", len(nodes))
	}
	f.register(k, "honest") // the key still works
}

func TestNodeIDsNotReused(t *testing.T) { forEachStore(t, testNodeIDsNotReused) }

func testNodeIDsNotReused(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
	n := f.register(k, "a")
	if err := f.s.DeleteNode(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if m := f.register(k, "b"); m.ID == n.ID {
		t.Fatalf("new node got deleted node's ID %d", n.ID)
	}
}

// TestSetNodeRuntimes: writing many nodes' runtime facts at once leaves
// each node as UpdateNodeRuntime overwriting them would, and names the
// IDs that have no node, on every backend.
func TestSetNodeRuntimes(t *testing.T) { forEachStore(t, testSetNodeRuntimes) }

func testSetNodeRuntimes(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
	seen := f.clock.Now().Add(time.Minute)
	rts := []NodeRuntime{
		{DiscoKey: key.NewDisco().Public(), Endpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:41641")},
			HomeRegion: 3, LastSeen: seen, Hostinfo: &wire.Hostinfo{Hostname: "a", OS: "windows"}},
		{DiscoKey: key.NewDisco().Public(), HomeRegion: 1, Hostinfo: &wire.Hostinfo{Hostname: "b"}}, // no OS: kept
		{}, // everything cleared
	}
	batch := map[wire.NodeID]NodeRuntime{}
	var viaBatch, viaOne []wire.NodeID
	for i, rt := range rts {
		a, b := f.register(k, fmt.Sprintf("a%d", i)), f.register(k, fmt.Sprintf("b%d", i))
		batch[a.ID] = rt
		if _, err := f.s.UpdateNodeRuntime(ctx, b.ID, func(cur *NodeRuntime) { *cur = rt }); err != nil {
			t.Fatal(err)
		}
		viaBatch, viaOne = append(viaBatch, a.ID), append(viaOne, b.ID)
	}
	gone := f.register(k, "gone")
	if err := f.s.DeleteNode(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	batch[gone.ID], batch[1<<40] = rts[0], rts[0]
	missing, err := f.s.SetNodeRuntimes(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(missing, []wire.NodeID{gone.ID, 1 << 40}) {
		t.Fatalf("missing %v, want [%d %d]", missing, gone.ID, wire.NodeID(1<<40))
	}
	for i := range rts {
		a, err := f.s.GetNode(ctx, viaBatch[i])
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.s.GetNode(ctx, viaOne[i])
		if err != nil {
			t.Fatal(err)
		}
		ja, _ := json.Marshal(struct {
			NodeRuntime
			OS string
		}{a.NodeRuntime, a.OS})
		jb, _ := json.Marshal(struct {
			NodeRuntime
			OS string
		}{b.NodeRuntime, b.OS})
		if string(ja) != string(jb) {
			t.Fatalf("runtime %d: SetNodeRuntimes left\n%s\nUpdateNodeRuntime\n%s", i, ja, jb)
		}
	}
	if a, _ := f.s.GetNode(ctx, viaBatch[0]); a.OS != "windows" || len(a.Endpoints) != 1 || !a.LastSeen.Equal(seen) {
		t.Fatalf("first node after SetNodeRuntimes: %+v", a)
	}
	if a, _ := f.s.GetNode(ctx, viaBatch[1]); a.OS != "linux" {
		t.Fatalf("host facts without an OS changed the OS to %q", a.OS)
	}
	if _, err := f.s.SetNodeRuntimes(ctx, nil); err != nil {
		t.Fatalf("nothing to write: %v", err)
	}
}

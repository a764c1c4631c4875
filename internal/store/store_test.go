package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/wire"
)

// clock is a settable time source for expiry tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	t     testing.TB
	path  string
	clock *clock
	s     Store
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		t:     t,
		path:  filepath.Join(t.TempDir(), "weft.db"),
		clock: &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)},
	}
	f.open()
	t.Cleanup(func() { f.s.Close() })
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	s, err := Open(context.Background(), f.path, Options{Now: f.clock.Now})
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
}

func (f *fixture) reopen() {
	f.t.Helper()
	if err := f.s.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.open()
}

func (f *fixture) user(name string) {
	f.t.Helper()
	if _, err := f.s.CreateUser(context.Background(), name); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) key(req AuthKeyRequest) string {
	f.t.Helper()
	secret, _, err := f.s.CreateAuthKey(context.Background(), req)
	if err != nil {
		f.t.Fatal(err)
	}
	return secret
}

// machine is a node's key material.
type machine struct {
	mk key.MachinePublic
	nk key.NodePublic
	dk key.DiscoPublic
}

// newMachine makes random public keys. They are not derived from private
// keys: the store never needs those, and the curve arithmetic would
// dominate tests that register thousands of nodes.
func newMachine() machine {
	return machine{
		key.PublicFromRaw32[key.MachineKind](rand32()),
		key.PublicFromRaw32[key.NodeKind](rand32()),
		key.PublicFromRaw32[key.DiscoKind](rand32()),
	}
}

func rand32() (b [32]byte) {
	rand.Read(b[:])
	return b
}

func (m machine) req(authKey, hostname string) RegisterRequest {
	return RegisterRequest{AuthKey: authKey, MachineKey: m.mk, NodeKey: m.nk, DiscoKey: m.dk, Hostname: hostname,
		Hostinfo: &wire.Hostinfo{Hostname: hostname, OS: "linux", Version: "test"}}
}

func (f *fixture) register(authKey, hostname string) Node {
	f.t.Helper()
	n, err := f.s.Register(context.Background(), newMachine().req(authKey, hostname))
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for _, tt := range []struct {
		name    string
		wantErr error
	}{
		{"alice", nil},
		{"bob@example.com", nil},
		{"alice", ErrExists},
		{"Alice", ErrInvalid},
		{"", ErrInvalid},
		{"-x", ErrInvalid},
		{"a b", ErrInvalid},
	} {
		t.Run("create "+tt.name, func(t *testing.T) {
			_, err := f.s.CreateUser(ctx, tt.name)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CreateUser(%q) = %v, want %v", tt.name, err, tt.wantErr)
			}
		})
	}
	users, err := f.s.ListUsers(ctx)
	if err != nil || len(users) != 2 || users[0].Name != "alice" || users[1].Name != "bob@example.com" {
		t.Fatalf("ListUsers = %v, %v", users, err)
	}

	t.Run("delete refused while owning nodes", func(t *testing.T) {
		n := f.register(f.key(AuthKeyRequest{User: "alice"}), "laptop")
		if err := f.s.DeleteUser(ctx, "alice"); !errors.Is(err, ErrUserInUse) {
			t.Fatalf("DeleteUser = %v, want ErrUserInUse", err)
		}
		if err := f.s.DeleteNode(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.s.DeleteUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		keys, err := f.s.ListAuthKeys(ctx, "")
		if err != nil || len(keys) != 0 {
			t.Fatalf("keys left after deleting their user: %v, %v", keys, err)
		}
	})
	t.Run("tagged nodes outlive the user", func(t *testing.T) {
		n := f.register(f.key(AuthKeyRequest{User: "bob@example.com", Tags: []string{"tag:server"}}), "srv")
		if err := f.s.DeleteUser(ctx, "bob@example.com"); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.GetNode(ctx, n.ID)
		if err != nil || got.User != "" || got.AuthKey != "" {
			t.Fatalf("GetNode after user deleted = %+v, %v", got, err)
		}
	})
	if err := f.s.DeleteUser(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteUser(nobody) = %v", err)
	}
}

func TestAuthKeys(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user("alice")

	t.Run("one-off", func(t *testing.T) {
		k := f.key(AuthKeyRequest{User: "alice"})
		f.register(k, "a")
		_, err := f.s.Register(ctx, newMachine().req(k, "b"))
		if !errors.Is(err, ErrKeyUsed) {
			t.Fatalf("second use = %v, want ErrKeyUsed", err)
		}
	})
	t.Run("one-off retry by the same machine", func(t *testing.T) {
		k := f.key(AuthKeyRequest{User: "alice"})
		m := newMachine()
		n1, err := f.s.Register(ctx, m.req(k, "retry"))
		if err != nil {
			t.Fatal(err)
		}
		n2, err := f.s.Register(ctx, m.req(k, "retry"))
		if err != nil || n2.ID != n1.ID {
			t.Fatalf("retry = %v, %v", n2.ID, err)
		}
		// Once the node is expired, the used key no longer lets it back.
		if _, err := f.s.ExpireNode(ctx, n1.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Register(ctx, m.req(k, "retry")); !errors.Is(err, ErrKeyUsed) {
			t.Fatalf("retry after expiry = %v, want ErrKeyUsed", err)
		}
	})
	t.Run("reusable", func(t *testing.T) {
		k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
		for range 3 {
			f.register(k, "r")
		}
		keys, _ := f.s.ListAuthKeys(ctx, "alice")
		if last := keys[len(keys)-1]; last.Uses != 3 || !last.Usable(f.clock.Now()) {
			t.Fatalf("reusable key after 3 uses: %+v", last)
		}
	})
	t.Run("expired", func(t *testing.T) {
		k := f.key(AuthKeyRequest{User: "alice", Reusable: true, Expiry: f.clock.Now().Add(time.Hour)})
		f.register(k, "e")
		f.clock.Advance(time.Hour)
		if _, err := f.s.Register(ctx, newMachine().req(k, "e")); !errors.Is(err, ErrKeyExpired) {
			t.Fatalf("after expiry = %v, want ErrKeyExpired", err)
		}
	})
	t.Run("expired by admin", func(t *testing.T) {
		k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
		if err := f.s.ExpireAuthKey(ctx, k[:14]); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Register(ctx, newMachine().req(k, "e")); !errors.Is(err, ErrKeyExpired) {
			t.Fatalf("after ExpireAuthKey = %v, want ErrKeyExpired", err)
		}
		if err := f.s.ExpireAuthKey(ctx, "wk000000000000"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ExpireAuthKey(unknown) = %v", err)
		}
		if err := f.s.ExpireAuthKey(ctx, "nonsense"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ExpireAuthKey(nonsense) = %v", err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		good := f.key(AuthKeyRequest{User: "alice", Reusable: true})
		for _, bad := range []string{
			"", "x", good[:14], good[:len(good)-1] + "0", good[:len(good)-1] + "1",
			"wk000000000000_" + good[15:], good + "0",
		} {
			if bad == good {
				continue
			}
			if _, err := f.s.Register(ctx, newMachine().req(bad, "i")); !errors.Is(err, ErrKeyInvalid) {
				t.Errorf("Register(%q) = %v, want ErrKeyInvalid", bad, err)
			}
		}
	})
	t.Run("create validation", func(t *testing.T) {
		for _, req := range []AuthKeyRequest{
			{User: "nobody"},
			{User: "alice", Tags: []string{"server"}},
			{User: "alice", Expiry: f.clock.Now().Add(-time.Second)},
		} {
			if _, _, err := f.s.CreateAuthKey(ctx, req); err == nil {
				t.Errorf("CreateAuthKey(%+v) succeeded", req)
			}
		}
	})
	t.Run("secret is not stored", func(t *testing.T) {
		k := f.key(AuthKeyRequest{User: "alice"})
		keys, _ := f.s.ListAuthKeys(ctx, "")
		for _, lk := range keys {
			if lk.Prefix == k {
				t.Fatal("listing shows the secret")
			}
		}
	})
}

// TestConcurrentOneOff races registrations on one one-off key through
// separate connections to a real database file: exactly one may win.
func TestConcurrentOneOff(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user("alice")
	const racers = 8
	for round := range 5 {
		k := f.key(AuthKeyRequest{User: "alice"})
		var wg sync.WaitGroup
		errs := make([]error, racers)
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				_, errs[i] = f.s.Register(ctx, newMachine().req(k, "race"))
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrKeyUsed):
			default:
				t.Fatalf("round %d: unexpected error %v", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d registrations won, want exactly 1", round, wins)
		}
	}
	nodes, _ := f.s.ListNodes(ctx)
	if len(nodes) != 5 {
		t.Fatalf("%d nodes, want 5", len(nodes))
	}
}

func TestNodeNames(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user("alice")
	k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
	long := "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghi" // sanitises to 63 characters
	for _, tt := range []struct{ hostname, want string }{
		{"busan", "busan"},
		{"busan", "busan-1"},
		{"Busan", "busan-2"},
		{"busan.local", "busan-3"},
		{"", "node"},
		{"!!!", "node-1"},
		{"busan-1", "busan-1-1"},
		{long, long[:63]},
		{long, long[:61] + "-1"},
	} {
		t.Run(tt.hostname, func(t *testing.T) {
			if n := f.register(k, tt.hostname); n.Name != tt.want {
				t.Fatalf("name %q, want %q", n.Name, tt.want)
			}
		})
	}
	t.Run("rename", func(t *testing.T) {
		n, _ := f.s.GetNodeByName(ctx, "busan-3")
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
		if n := f.register(k, "busan"); n.Name != "busan-3" {
			t.Fatalf("name %q, want busan-3", n.Name)
		}
	})
}

func TestAllocation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
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

func TestReRegistration(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
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

func TestRotateNodeKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
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

func TestExpireNode(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
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

func TestUpdateNodeRuntime(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
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

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user("alice")
	n := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	v4all, v6all := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	lan := netip.MustParsePrefix("192.168.1.0/24")

	if _, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("non-canonical prefix = %v", err)
	}
	if _, err := f.s.ApproveRoute(ctx, n.ID, v4all); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approving unadvertised route = %v", err)
	}
	got, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{v6all, lan, v4all})
	if err != nil || len(got.AdvertisedRoutes) != 3 || len(got.EnabledRoutes()) != 0 {
		t.Fatalf("advertised: %+v, %v", got.AdvertisedRoutes, err)
	}
	for _, p := range []netip.Prefix{v4all, v6all} {
		if got, err = f.s.ApproveRoute(ctx, n.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	if en := got.EnabledRoutes(); len(en) != 2 || en[0] != v4all || en[1] != v6all {
		t.Fatalf("enabled %v", en)
	}
	w := got.Wire()
	if len(w.Routes) != 2 || len(w.AllowedIPs) != 4 {
		t.Fatalf("wire routes %v allowed %v", w.Routes, w.AllowedIPs)
	}

	// Switching the exit node off keeps the approval; on again, it is
	// enabled at once.
	got, _ = f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{lan})
	if len(got.EnabledRoutes()) != 0 || len(got.ApprovedRoutes) != 2 {
		t.Fatalf("after withdrawal: adv %v appr %v", got.AdvertisedRoutes, got.ApprovedRoutes)
	}
	got, _ = f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{lan, v4all, v6all})
	if len(got.EnabledRoutes()) != 2 {
		t.Fatalf("after re-advertising: %v", got.EnabledRoutes())
	}

	if got, err = f.s.RejectRoute(ctx, n.ID, v6all); err != nil || len(got.EnabledRoutes()) != 1 {
		t.Fatalf("reject: %v, %v", got.EnabledRoutes(), err)
	}
	if _, err := f.s.RejectRoute(ctx, n.ID, netip.MustParsePrefix("10.0.0.0/8")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reject unknown = %v", err)
	}
	rs, err := f.s.ListRoutes(ctx)
	if err != nil || len(rs) != 3 {
		t.Fatalf("ListRoutes = %+v, %v", rs, err)
	}
	if rs[0].Prefix != v4all || !rs[0].Enabled() || rs[1].Prefix != lan || rs[1].Approved || rs[2].Prefix != v6all || rs[2].Enabled() {
		t.Fatalf("ListRoutes = %+v", rs)
	}
	if err := f.s.DeleteNode(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if rs, _ := f.s.ListRoutes(ctx); len(rs) != 0 {
		t.Fatalf("routes of deleted node remain: %v", rs)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.user("alice")
	for range 3 {
		f.reopen()
	}
	if users, err := f.s.ListUsers(ctx); err != nil || len(users) != 1 {
		t.Fatalf("after reopens: %v, %v", users, err)
	}
	s := f.s.(*sqlStore)
	var n, max int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) || max != len(migrations) {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, max, len(migrations))
	}

	t.Run("newer schema refused", func(t *testing.T) {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, len(migrations)+1); err != nil {
			t.Fatal(err)
		}
		f.s.Close()
		_, err := Open(ctx, f.path, Options{})
		if err == nil {
			t.Fatal("opened a database from a newer weft")
		}
		t.Log(err)
		f.s, _ = openSQLite(ctx, filepath.Join(t.TempDir(), "x.db"), Options{}) // for the cleanup
	})
}

// TestPragmas checks that every pooled connection runs with the settings
// the durability promise rests on.
func TestPragmas(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	db := f.s.(*sqlStore).db
	// Hold several connections at once so the pool opens more than one.
	var conns []interface{ Close() error }
	for range 3 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for _, p := range []struct {
			pragma string
			want   string
		}{
			{"journal_mode", "wal"},
			{"synchronous", "2"}, // FULL
			{"foreign_keys", "1"},
			{"busy_timeout", "10000"},
		} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil || got != p.want {
				t.Errorf("PRAGMA %s = %q, %v; want %q", p.pragma, got, err, p.want)
			}
		}
	}
	for _, c := range conns {
		c.Close()
	}
}

// TestReadDoesNotBlockWriter: a write commits while a read transaction is
// open (it would wait out the busy timeout and fail if reads took the
// write lock).
func TestReadDoesNotBlockWriter(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.s.(*sqlStore)
	err := s.read(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
			return err
		}
		_, err := f.s.CreateUser(ctx, "alice")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentOpen opens one new database from several handles at once,
// as two server processes started together would: all succeed, the
// migrations run once and everyone sees the same ULA prefix.
func TestConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	const n = 6
	stores := make([]Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, path, Options{}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	_, want := stores[0].AddressPrefixes()
	for i, s := range stores {
		if _, got := s.AddressPrefixes(); got != want {
			t.Fatalf("store %d has ULA %v, store 0 %v", i, got, want)
		}
	}
	var rows int
	if err := stores[0].(*sqlStore).db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(migrations) {
		t.Fatalf("schema_migrations rows = %d, %v", rows, err)
	}
}

func TestFilesOwnerOnly(t *testing.T) {
	f := newFixture(t)
	f.user("alice") // makes sure the WAL exists
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(f.path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f.path+suffix), fi.Mode().Perm())
		}
	}
}

// TestRegisterIsAtomic: a registration that fails after the key check
// leaves the one-off key unused, as the key use and the node are one
// transaction.
func TestRegisterIsAtomic(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
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

// TestNodeIDsNotReused: deleting the newest node does not hand its ID to
// the next one, which peers could otherwise confuse with the old node.
func TestNodeIDsNotReused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
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

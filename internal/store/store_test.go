package store

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/wire"
)

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

func TestUsers(t *testing.T) { forEachStore(t, testUsers) }

func testUsers(t *testing.T, f *fixture) {
	ctx := context.Background()
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

func TestAuthKeys(t *testing.T) { forEachStore(t, testAuthKeys) }

func testAuthKeys(t *testing.T, f *fixture) {
	ctx := context.Background()
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
func TestConcurrentOneOff(t *testing.T) { forEachStore(t, testConcurrentOneOff) }

func testConcurrentOneOff(t *testing.T, f *fixture) {
	ctx := context.Background()
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
func TestReadDoesNotBlockWriter(t *testing.T) { forEachStore(t, testReadDoesNotBlockWriter) }

func testReadDoesNotBlockWriter(t *testing.T, f *fixture) {
	ctx := context.Background()
	s := f.s.(*sqlStore)
	err := s.read(ctx, func(tx *dbTx) error {
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

func TestFilesOwnerOnly(t *testing.T) {
	f := newFixture(t)
	f.user("alice") // makes sure the WAL exists
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(f.where + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f.where+suffix), fi.Mode().Perm())
		}
	}
}

// TestRegisterIsAtomic: a registration that fails after the key check
// leaves the one-off key unused, as the key use and the node are one
// transaction.
// TestNodeIDsNotReused: deleting the newest node does not hand its ID to
// the next one, which peers could otherwise confuse with the old node.

func TestDNSSettings(t *testing.T) { forEachStore(t, testDNSSettings) }

func testDNSSettings(t *testing.T, f *fixture) {
	ctx := context.Background()
	src, at, err := f.s.DNSSettings(ctx)
	if err != nil || src != nil || !at.IsZero() {
		t.Fatalf("fresh store: %q %v %v, want nothing", src, at, err)
	}
	for _, want := range []string{"{ // first\n}", `{"domain": "corp.internal"}`} {
		if err := f.s.SetDNSSettings(ctx, []byte(want)); err != nil {
			t.Fatal(err)
		}
		f.s.Close()
		f.open() // it survives a restart
		got, at, err := f.s.DNSSettings(ctx)
		if err != nil || string(got) != want || !at.Equal(f.clock.Now()) {
			t.Fatalf("DNSSettings = %q %v %v, want %q at %v", got, at, err, want, f.clock.Now())
		}
	}
}

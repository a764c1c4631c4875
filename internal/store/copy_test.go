package store

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"weft/internal/pgtest"
)

// TestCopySQLiteToPostgres copies a tailnet from an SQLite database that
// is still open (its last writes only in the WAL) into PostgreSQL and
// checks that everything reads back the same: every node with its ID,
// name, keys, addresses, routes and runtime, the IPv6 prefix, users, keys,
// policies, DNS settings, API keys and the audit log. Afterwards the
// tailnet goes on in PostgreSQL: a used one-off key stays used, an API key
// still works, a new node gets a fresh ID and address. A second copy is
// refused without Replace and succeeds with it.
func TestCopySQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t) // SQLite, left open like a running server's
	deleted := buildTailnet(t, f)
	pgURL := pgtest.NewDB(t)

	rep, err := CopySQLiteToPostgres(ctx, f.where, pgURL, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.s.ListNodes(ctx)
	if rep.Nodes != len(want) || len(rep.Tables) != len(copyTables) {
		t.Fatalf("report %+v, want %d nodes and %d tables", rep, len(want), len(copyTables))
	}
	for _, tc := range rep.Tables {
		if tc.Source != tc.Target {
			t.Errorf("table %s: %d rows copied, %d read back", tc.Table, tc.Source, tc.Target)
		}
	}
	pg, err := openPostgres(ctx, pgURL, Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	sameTailnet(t, f.s, pg)

	t.Run("goes on in PostgreSQL", func(t *testing.T) {
		if _, err := pg.Register(ctx, newMachine().req(f.usedOneOff, "again")); !errors.Is(err, ErrKeyUsed) {
			t.Errorf("used one-off key after the copy: %v, want ErrKeyUsed", err)
		}
		if _, err := pg.CheckAPIKey(ctx, f.apiKey); err != nil {
			t.Errorf("API key after the copy: %v", err)
		}
		n, err := pg.Register(ctx, newMachine().req(f.reusable, "new"))
		if err != nil {
			t.Fatal(err)
		}
		if int64(n.ID) <= deleted {
			t.Errorf("new node got ID %d, not after the deleted node's %d", n.ID, deleted)
		}
		for _, o := range want {
			if o.IPv4 == n.IPv4 || o.IPv6 == n.IPv6 || o.Name == n.Name {
				t.Errorf("new node %v/%v/%s collides with node %d", n.IPv4, n.IPv6, n.Name, o.ID)
			}
		}
	})
	t.Run("non-empty target", func(t *testing.T) {
		if _, err := CopySQLiteToPostgres(ctx, f.where, pgURL, CopyOptions{}); !errors.Is(err, ErrTargetNotEmpty) {
			t.Fatalf("second copy: %v, want ErrTargetNotEmpty", err)
		}
		if _, err := CopySQLiteToPostgres(ctx, f.where, pgURL, CopyOptions{Replace: true}); err != nil {
			t.Fatalf("copy with Replace: %v", err)
		}
		again, err := openPostgres(ctx, pgURL, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		sameTailnet(t, f.s, again)
	})
}

// buildTailnet fills f with one of everything and returns the ID of a
// deleted node (the highest ID handed out). It notes in f the secrets of
// a used one-off key, a reusable key and an API key.
func buildTailnet(t *testing.T, f *fixture) (deleted int64) {
	ctx := context.Background()
	f.user("alice")
	f.user("bob")
	f.reusable = f.key(AuthKeyRequest{User: "alice", Reusable: true})
	f.usedOneOff = f.key(AuthKeyRequest{User: "bob"})
	tagged := f.key(AuthKeyRequest{User: "alice", Reusable: true, Tags: []string{"tag:exit"}})
	f.register(f.usedOneOff, "bob-laptop")
	exit := f.register(tagged, "busan")
	route := netip.MustParsePrefix("0.0.0.0/0")
	if _, err := f.s.SetAdvertisedRoutes(ctx, exit.ID, []netip.Prefix{route, netip.MustParsePrefix("192.168.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.ApproveRoute(ctx, exit.ID, route); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		n := f.register(f.reusable, "mac")
		if _, err := f.s.UpdateNodeRuntime(ctx, n.ID, func(r *NodeRuntime) {
			r.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:41641")}
			r.HomeRegion = 1
			r.LastSeen = f.clock.Now()
		}); err != nil {
			t.Fatal(err)
		}
	}
	last := f.register(f.reusable, "gone")
	if err := f.s.DeleteNode(ctx, last.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.AddPolicy(ctx, PolicyVersion{Body: []byte(`{"acls": []}`)}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetDNSSettings(ctx, []byte(`{"domain": "corp.internal"}`)); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.apiKey, _, err = f.s.CreateAPIKey(ctx, APIKeyRequest{User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.AppendAudit(ctx, AuditEntry{Actor: "alice", Credential: "admin socket", Remote: "local", Action: "user.create", Target: "bob"}); err != nil {
		t.Fatal(err)
	}
	return int64(last.ID)
}

// sameTailnet fails t unless a and b hold the same tailnet.
func sameTailnet(t *testing.T, a, b Store) {
	t.Helper()
	ctx := context.Background()
	_, av6 := a.AddressPrefixes()
	if _, bv6 := b.AddressPrefixes(); av6 != bv6 {
		t.Errorf("IPv6 prefix %v, want %v", bv6, av6)
	}
	for _, c := range []struct {
		what string
		get  func(Store) (any, error)
	}{
		{"nodes", func(s Store) (any, error) { return s.ListNodes(ctx) }},
		{"users", func(s Store) (any, error) { return s.ListUsers(ctx) }},
		{"auth keys", func(s Store) (any, error) { return s.ListAuthKeys(ctx, "") }},
		{"routes", func(s Store) (any, error) { return s.ListRoutes(ctx) }},
		{"policies", func(s Store) (any, error) { return s.ListPolicies(ctx) }},
		{"policy", func(s Store) (any, error) { return s.GetPolicy(ctx, 0) }},
		{"API keys", func(s Store) (any, error) { return s.ListAPIKeys(ctx) }},
		{"audit log", func(s Store) (any, error) { return s.ListAudit(ctx, AuditQuery{}) }},
		{"DNS settings", func(s Store) (any, error) {
			src, at, err := s.DNSSettings(ctx)
			return []any{string(src), at}, err
		}},
	} {
		av, aerr := c.get(a)
		bv, berr := c.get(b)
		if aerr != nil || berr != nil {
			t.Errorf("%s: %v / %v", c.what, aerr, berr)
			continue
		}
		if !reflect.DeepEqual(av, bv) {
			t.Errorf("%s differ after the copy:\nSQLite     %+v\nPostgreSQL %+v", c.what, av, bv)
		}
	}
}

// TestCopyTablesCoverSchema is the drift guard of the copy: every table of
// the schema is in copyTables (and nothing else is), so a migration that
// adds a table must say how to copy it.
func TestCopyTablesCoverSchema(t *testing.T) {
	f := newFixture(t)
	got, err := sqliteTables(context.Background(), f.s.(*sqlStore).db)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range copyTables {
		want = append(want, c.name)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("schema tables %v, copyTables %v: add the new table to copyTables (in foreign-key order), or to notCopied if it is no part of the tailnet", got, want)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/adminapi"
	"weft/internal/key"
	"weft/internal/pgtest"
	"weft/internal/store"
	"weft/internal/tstest/storetest"
)

// TestAdminDBMigrateFromSQLite moves a tailnet with `weft admin db
// migrate-from-sqlite FILE --db URL` while its SQLite database is still
// open, starts `weft server --db URL` on the copy, and checks through
// `weft admin nodes list --json` that every node kept its ID, name, keys
// and addresses; a second run without --replace is refused with exit 2.
func TestAdminDBMigrateFromSQLite(t *testing.T) {
	ctx := context.Background()
	srcPath := filepath.Join(t.TempDir(), "weft.db")
	src := storetest.Open(t, srcPath, store.Options{}, "alice") // open throughout, as a running server's would be
	k, _, err := src.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := src.Register(ctx, store.RegisterRequest{AuthKey: k, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: fmt.Sprintf("node%d", i%3)}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := src.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}

	pgURL := pgtest.NewDB(t)
	out, errs, code := weft(t, "admin", "db", "migrate-from-sqlite", srcPath, "--db", pgURL)
	if code != 0 || !strings.Contains(out, "5 nodes checked") {
		t.Fatalf("migrate-from-sqlite: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := weft(t, "admin", "db", "migrate-from-sqlite", srcPath, "--db", pgURL); code != 2 || !strings.Contains(errs, "--replace") {
		t.Errorf("second copy: exit %d %q, want 2 naming --replace", code, errs)
	}

	dataDir := filepath.Join(t.TempDir(), "server")
	startServer(t, freeURL(t), dataDir, "--db", pgURL)
	out, errs, code = weft(t, "admin", "--data-dir", dataDir, "nodes", "list", "--json")
	var got []adminapi.Node
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("nodes list: exit %d %s%s", code, out, errs)
	}
	if len(got) != len(want) {
		t.Fatalf("%d nodes on PostgreSQL, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.Name != w.Name || g.IPv4 != w.IPv4 || g.IPv6 != w.IPv6 ||
			g.MachineKey != w.MachineKey || g.NodeKey != w.NodeKey {
			t.Errorf("node %d after the move: %d %s %v %v, want %d %s %v %v",
				i, g.ID, g.Name, g.IPv4, g.IPv6, w.ID, w.Name, w.IPv4, w.IPv6)
		}
	}
}

// TestAdminDBMigrateNeedsTarget: without --db or $WEFT_DB the command is a
// usage error saying how to name the target.
func TestAdminDBMigrateNeedsTarget(t *testing.T) {
	t.Setenv(dbEnv, "")
	_, errs, code := weft(t, "admin", "db", "migrate-from-sqlite", filepath.Join(t.TempDir(), "weft.db"))
	if code != 2 || !strings.Contains(errs, "--db postgres://") {
		t.Fatalf("exit %d %q, want 2 naming --db postgres://", code, errs)
	}
}

package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/pgtest"
)

// TestServerDB runs weft server on a real PostgreSQL, named by --db and by
// $WEFT_DB as a unix-socket libpq URL, and checks the contract: `weft
// admin --data-dir DIR` reaches it through the admin socket in --data-dir,
// what it changes is in PostgreSQL, and no SQLite file is made.
func TestServerDB(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	for _, how := range []string{"flag", "env"} {
		t.Run(how, func(t *testing.T) {
			dbURL := srv.CreateDB(t)
			if !strings.HasPrefix(dbURL, "postgres://weft@/") || !strings.Contains(dbURL, "host=%2F") {
				t.Fatalf("pgtest URL %q is not the unix-socket form", dbURL)
			}
			dataDir := filepath.Join(t.TempDir(), "server")
			var extra []string
			if how == "flag" {
				extra = []string{"--db", dbURL}
			} else {
				t.Setenv(dbEnv, dbURL)
			}
			stop := startServer(t, freeURL(t), dataDir, extra...)
			if out, errs, code := weft(t, "admin", "--data-dir", dataDir, "users", "create", "alice"); code != 0 {
				t.Fatalf("weft admin users create: exit %d: %s%s", code, out, errs)
			}
			got, err := srv.Query(context.Background(), dbName(t, dbURL), "SELECT name FROM users")
			if err != nil || got != "alice" {
				t.Fatalf("users in PostgreSQL = %q, %v; want alice", got, err)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "weft.db")); !os.IsNotExist(err) {
				t.Errorf("the server made an SQLite database in --data-dir (stat: %v)", err)
			}
			stop()
		})
	}
}

// TestServerDBRefusesOtherURLs: a --db that is not a PostgreSQL URL is a
// usage error (exit 2) saying what to give, before anything starts.
func TestServerDBRefusesOtherURLs(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "server")
	for _, db := range []string{"mysql://weft@db/weft", "/var/lib/weft/weft.db"} {
		_, errs, code := weft(t, "server", "--data-dir", dataDir, "--server-url", "http://127.0.0.1:1", "--db", db)
		if code != 2 || !strings.Contains(errs, "postgres://") {
			t.Errorf("--db %q: exit %d, %q; want exit 2 naming postgres://", db, code, errs)
		}
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("a refused --db still made %s", dataDir)
	}
}

// dbName returns the database a libpq URL names.
func dbName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

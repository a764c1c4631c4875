package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"weft/internal/store"
)

// dbEnv names the environment variable that gives the database when
// --db is not set, so that a URL with a password need not show in ps.
const dbEnv = "WEFT_DB"

// serverDBURL returns the database the server was told to use: --db, else
// $WEFT_DB, else "" for SQLite in the data directory.
func serverDBURL(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv(dbEnv)
}

// checkDBURL refuses a database that is neither empty (SQLite) nor a
// PostgreSQL URL, before anything is started.
func checkDBURL(dbURL string) error {
	if dbURL == "" || store.IsPostgresURL(dbURL) {
		return nil
	}
	return usageError{fmt.Errorf("--db / $%s %q is not a PostgreSQL URL: give postgres://USER@HOST/DB or postgres:///DB?host=/run/postgresql, or leave it unset for SQLite in --data-dir",
		dbEnv, store.RedactURL(dbURL))}
}

// openServerStore opens the server's store: the PostgreSQL database dbURL
// names (docs/postgres.md), or SQLite at DATA-DIR/weft.db when it is
// empty. The data directory keeps the server's local files either way.
func openServerStore(ctx context.Context, dbURL, dataDir string) (store.Store, error) {
	if err := checkDBURL(dbURL); err != nil {
		return nil, err
	}
	if dbURL != "" {
		return store.OpenPostgres(ctx, dbURL, store.Options{})
	}
	return store.Open(ctx, filepath.Join(dataDir, "weft.db"), store.Options{})
}

// describeDB names the server's database for its start-up log line,
// without any password.
func describeDB(dbURL, dataDir string) string {
	if dbURL == "" {
		return "sqlite:" + filepath.Join(dataDir, "weft.db")
	}
	return store.RedactURL(dbURL)
}

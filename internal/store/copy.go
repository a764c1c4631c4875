package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyTableSpec names a table and its auto-incrementing column.
type copyTableSpec struct{ name, idColumn string }

// copyTables are the tailnet's tables in an order that satisfies their
// foreign keys, with each one's auto-incrementing column ("" for none).
// CopySQLiteToPostgres refuses a database with a table not listed here, and
// TestCopyTablesCoverSchema fails when a migration adds one.
var copyTables = []copyTableSpec{
	{"settings", ""},
	{"users", "id"},
	{"auth_keys", "id"},
	{"nodes", "id"},
	{"routes", ""},
	{"policies", "version"},
	{"dns_settings", ""},
	{"api_keys", "id"},
	{"audit_log", "id"},
	{"node_logins", ""},
}

// notCopied are tables that hold the running servers' state rather than
// the tailnet's, which a copy leaves behind: the servers' liveness rows
// name processes of the SQLite server, not of the PostgreSQL ones; console
// sign-ins are short-lived, and people sign in again on the new database.
var notCopied = []string{"control_servers", "console_links", "console_sessions", "oidc_flows"}

// CopyOptions tunes CopySQLiteToPostgres.
type CopyOptions struct {
	// Replace deletes whatever tailnet the target holds before copying.
	// Without it a target with any user, key, node, policy or log entry
	// is refused.
	Replace bool
}

// CopyReport says how many rows of each table were copied, in copyTables
// order, and that they were checked.
type CopyReport struct {
	Tables []TableCount `json:"tables"`
	// Nodes is how many nodes were compared field by field (ID, name,
	// keys, addresses, routes) between the source and the target.
	Nodes int `json:"nodes_checked"`
}

// TableCount is one table's row count in the source and, read back after
// the commit, in the target.
type TableCount struct {
	Table  string `json:"table"`
	Source int64  `json:"sqlite"`
	Target int64  `json:"postgresql"`
}

// ErrTargetNotEmpty: the PostgreSQL database already holds a tailnet.
var ErrTargetNotEmpty = errors.New("store: the PostgreSQL database already holds a tailnet")

// CopySQLiteToPostgres copies the tailnet in the SQLite database at
// sqlitePath into the PostgreSQL database dbURL, in one transaction.
//
// The SQLite file may be in use by a running server: it is opened
// read-only and copied from a consistent snapshot (VACUUM INTO a private
// temporary file), which is first migrated to this build's schema. The
// target is migrated too, then must be empty (see CopyOptions.Replace).
// Rows keep their IDs, and each ID sequence continues after the source's
// highest ID ever used, so deleted nodes' IDs stay retired. The tailnet's
// IPv6 prefix comes along with the rest of the settings, so every node
// keeps both its addresses.
//
// After the commit it reads the target back: every table's row count
// and every node's ID, name, keys, addresses and routes must equal the
// snapshot's, or it returns an error saying what differs.
//
// Servers already running on the target keep the prefix they read at
// start: copy before starting servers on PostgreSQL.
func CopySQLiteToPostgres(ctx context.Context, sqlitePath, dbURL string, opts CopyOptions) (CopyReport, error) {
	tmp, err := os.MkdirTemp("", "weft-copy-")
	if err != nil {
		return CopyReport{}, fmt.Errorf("store: copy: %w", err)
	}
	defer os.RemoveAll(tmp)
	snapPath := filepath.Join(tmp, "snapshot.db")
	if err := snapshotSQLite(ctx, sqlitePath, snapPath); err != nil {
		return CopyReport{}, err
	}
	src, err := openSQLite(ctx, snapPath, Options{})
	if err != nil {
		return CopyReport{}, fmt.Errorf("store: copy: snapshot of %s: %w", sqlitePath, err)
	}
	defer src.Close()
	if err := checkKnownTables(ctx, src); err != nil {
		return CopyReport{}, err
	}
	// Opening the target migrates it to this build's schema.
	dst, err := openPostgres(ctx, dbURL, Options{})
	if err != nil {
		return CopyReport{}, err
	}
	dst.Close()
	rep, err := copyAll(ctx, src, dbURL, opts)
	if err != nil {
		return CopyReport{}, err
	}
	// Opened again, the target reads the settings the copy wrote.
	dst, err = openPostgres(ctx, dbURL, Options{})
	if err != nil {
		return rep, err
	}
	defer dst.Close()
	if err := verifyCopy(ctx, src, dst, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// snapshotSQLite writes a consistent copy of the database at path to
// snapPath, opening path read-only: a running server's writes go on, and
// the copy holds exactly the transactions committed when it began.
func snapshotSQLite(ctx context.Context, path, snapPath string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("store: copy: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Set("mode", "ro")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("store: copy: opening %s: %w", path, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, snapPath); err != nil {
		return fmt.Errorf("store: copy: snapshot of %s (is it a weft SQLite database?): %w", path, err)
	}
	return nil
}

// checkKnownTables refuses a source with a table this build does not know
// how to copy, which would otherwise be left behind silently.
func checkKnownTables(ctx context.Context, src *sqlStore) error {
	names, err := sqliteTables(ctx, src.db)
	if err != nil {
		return fmt.Errorf("store: copy: %w", err)
	}
	for _, n := range names {
		if !slices.ContainsFunc(copyTables, func(t copyTableSpec) bool { return t.name == n }) {
			return fmt.Errorf("store: copy: the SQLite database has a table %q this weft cannot copy; use the weft that made it", n)
		}
	}
	return nil
}

// sqliteTables lists the tailnet's tables in an SQLite database: all but
// SQLite's own, the migration history and notCopied.
func sqliteTables(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		if !slices.Contains(notCopied, n) {
			names = append(names, n)
		}
	}
	return names, rows.Err()
}

// copyAll copies every table from src to the PostgreSQL database in one
// transaction, after checking (or, with Replace, emptying) the target.
func copyAll(ctx context.Context, src *sqlStore, dbURL string, opts CopyOptions) (CopyReport, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return CopyReport{}, fmt.Errorf("store: copy: connecting to %s: %w", RedactURL(dbURL), err)
	}
	defer conn.Close(context.Background())
	var rep CopyReport
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := prepareTarget(ctx, tx, opts.Replace); err != nil {
			return err
		}
		for _, t := range copyTables {
			n, err := copyTable(ctx, src, tx, t.name)
			if err != nil {
				return fmt.Errorf("table %s: %w", t.name, err)
			}
			if err := continueSequence(ctx, src, tx, t.name, t.idColumn); err != nil {
				return fmt.Errorf("table %s: %w", t.name, err)
			}
			rep.Tables = append(rep.Tables, TableCount{Table: t.name, Source: n})
		}
		return nil
	})
	if err != nil {
		return CopyReport{}, fmt.Errorf("store: copy (nothing was written): %w", err)
	}
	return rep, nil
}

// prepareTarget refuses a target that holds a tailnet, or empties it when
// replace is set. Settings do not count: opening the target made its own.
func prepareTarget(ctx context.Context, tx pgx.Tx, replace bool) error {
	// Locking every table first keeps servers already running on the
	// target from writing between the check and the commit.
	var names []string
	for _, t := range copyTables {
		names = append(names, pgx.Identifier{t.name}.Sanitize())
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(names, ", ")+` IN EXCLUSIVE MODE`); err != nil {
		return err
	}
	for i := len(copyTables) - 1; i >= 0; i-- {
		t := copyTables[i].name
		if t != "settings" && !replace {
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: table %s has %d rows; pass --replace to delete it first", ErrTargetNotEmpty, t, n)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{t}.Sanitize()); err != nil {
			return err
		}
	}
	return nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver (pure Go, no cgo)
)

// Open opens (creating if needed) the SQLite database at path, applies any
// pending schema migrations, and returns a Store. Close it when done.
//
// Each connection runs with:
//   - journal_mode=WAL, so readers do not block the writer;
//   - synchronous=FULL, so every commit fsyncs the WAL before returning.
//     With NORMAL, WAL commits survive a process kill but the last ones can
//     be lost on power failure; weft promises that a node or key whose
//     creation returned is never lost, so it pays one fsync per write;
//   - foreign_keys=ON, which SQLite leaves off by default;
//   - busy_timeout, so concurrent writers wait instead of failing;
//   - transactions begun IMMEDIATE (_txlock), taking the write lock at
//     BEGIN: a deferred transaction that reads and then writes can fail
//     with SQLITE_BUSY when another writer got there first, which the busy
//     timeout does not retry.
func Open(ctx context.Context, path string, opts Options) (Store, error) {
	return openSQLite(ctx, path, opts)
}

func openSQLite(ctx context.Context, path string, opts Options) (*sqlStore, error) {
	// Create the file owner-only before SQLite does (it would use 0644):
	// it holds key hashes and the node list, and SQLite gives the -wal
	// and -shm files the database file's permissions. An existing file
	// keeps whatever mode its owner chose.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	f.Close()
	q := url.Values{}
	// busy_timeout goes first so that the pragmas after it, which may need
	// a lock on a database another process is opening too, wait for it.
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	s := &sqlStore{db: db, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return s, nil
}

// migrations is the schema history; migration i+1 is migrations[i]. Never
// edit a released entry: append a new one. The DDL is SQLite's; a
// PostgreSQL store will keep its own list with the same versions.
var migrations = []string{
	// 1: first schema. Times are Unix nanoseconds, 0 for "none"; key and
	// address columns hold their text forms; lists are JSON or
	// comma-separated text, as nothing queries inside them.
	`CREATE TABLE settings (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE users (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		name       TEXT NOT NULL UNIQUE,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE auth_keys (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		prefix     TEXT NOT NULL UNIQUE,
		hash       TEXT NOT NULL,
		user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		reusable   BOOLEAN NOT NULL,
		ephemeral  BOOLEAN NOT NULL,
		tags       TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expiry     BIGINT NOT NULL,
		uses       BIGINT NOT NULL DEFAULT 0,
		last_used  BIGINT NOT NULL DEFAULT 0
	);
	CREATE TABLE nodes (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		name        TEXT NOT NULL UNIQUE,
		user_id     BIGINT REFERENCES users(id),
		tags        TEXT NOT NULL,
		machine_key TEXT NOT NULL UNIQUE,
		node_key    TEXT NOT NULL UNIQUE,
		disco_key   TEXT NOT NULL,
		key_expiry  BIGINT NOT NULL,
		ephemeral   BOOLEAN NOT NULL,
		auth_key_id BIGINT REFERENCES auth_keys(id) ON DELETE SET NULL,
		ipv4        TEXT NOT NULL UNIQUE,
		ipv6        TEXT NOT NULL UNIQUE,
		hostname    TEXT NOT NULL,
		os          TEXT NOT NULL,
		endpoints   TEXT NOT NULL,
		home_region BIGINT NOT NULL,
		hostinfo    TEXT NOT NULL,
		last_seen   BIGINT NOT NULL,
		created_at  BIGINT NOT NULL
	);
	CREATE TABLE routes (
		node_id    BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		prefix     TEXT NOT NULL,
		advertised BOOLEAN NOT NULL,
		approved   BOOLEAN NOT NULL,
		PRIMARY KEY (node_id, prefix)
	);
	CREATE INDEX auth_keys_user ON auth_keys(user_id);
	CREATE INDEX nodes_user ON nodes(user_id);`,
	// 2: the tailnet's access policy, every accepted version kept; and
	// which policy rule approved a route, when one did.
	`CREATE TABLE policies (
		version    INTEGER PRIMARY KEY AUTOINCREMENT,
		body       TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	ALTER TABLE routes ADD COLUMN auto_approved_by TEXT NOT NULL DEFAULT '';`,
	// 3: the tailnet's DNS settings file, one row, kept as the
	// administrator wrote it (comments and all) so it reads back as set.
	`CREATE TABLE dns_settings (
		id         INTEGER PRIMARY KEY CHECK (id = 1),
		source     TEXT NOT NULL,
		updated_at BIGINT NOT NULL
	);`,
	// 4: API keys of the REST API, stored as the SHA-256 of the whole
	// key (see apikeys.go); revoked_at and last_used are 0 for "never".
	`CREATE TABLE api_keys (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		prefix     TEXT NOT NULL UNIQUE,
		hash       TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expiry     BIGINT NOT NULL,
		revoked_at BIGINT NOT NULL DEFAULT 0,
		last_used  BIGINT NOT NULL DEFAULT 0
	);`,
	// 5: permission levels and the audit log. A user is an admin or a
	// member (an ordinary user, who sees and changes only their own
	// nodes); an API key acts for its user, or, with no user (keys made
	// before version 5), for the server's administrator. audit_log keeps
	// every change made through the admin API: who (user, or '' for the
	// server's administrator), with which credential, from where, what.
	`ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
	ALTER TABLE api_keys ADD COLUMN user_id BIGINT REFERENCES users(id) ON DELETE CASCADE;
	CREATE TABLE audit_log (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		at         BIGINT NOT NULL,
		actor      TEXT NOT NULL,
		credential TEXT NOT NULL,
		remote     TEXT NOT NULL,
		action     TEXT NOT NULL,
		target     TEXT NOT NULL,
		detail     TEXT NOT NULL
	);`,
}

// init applies pending migrations and loads (or makes) the settings.
func (s *sqlStore) init(ctx context.Context) error {
	if err := s.migrate(ctx); err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		ula, err := getSetting(ctx, tx, "ula_prefix")
		if errors.Is(err, sql.ErrNoRows) {
			p, err := newULA()
			if err != nil {
				return err
			}
			ula = p.String()
			if err := putSetting(ctx, tx, "ula_prefix", ula); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		p, err := netip.ParsePrefix(ula)
		if err != nil || p.Bits() != 48 || !p.Addr().Is6() {
			return fmt.Errorf("settings: stored ula_prefix %q is not an IPv6 /48", ula)
		}
		s.ula = p
		return nil
	})
}

// migrate applies, in one transaction, every migration newer than the
// database's version. Running it again is a no-op; the IMMEDIATE
// transaction makes two processes opening a new database at once apply
// each migration exactly once.
func (s *sqlStore) migrate(ctx context.Context) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("database schema version %d is newer than this weft build understands (%d); run a newer weft", have, len(migrations))
		}
		for v := have + 1; v <= len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, s.now().UnixNano()); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		return nil
	})
}

func getSetting(ctx context.Context, tx *sql.Tx, name string) (string, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	return v, err
}

func putSetting(ctx context.Context, tx *sql.Tx, name, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	if err != nil {
		return fmt.Errorf("settings %s: %w", name, err)
	}
	return nil
}

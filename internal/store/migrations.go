package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// migrations is the schema history of both dialects; migration i+1 is
// migrations[i]. Never edit a released entry: append a new one. Where the
// dialects differ the DDL names a {{word}} that each dialect spells its
// own way (see dialect.go); everything else must be SQL both accept.
var migrations = []string{
	// 1: first schema. Times are Unix nanoseconds, 0 for "none"; key and
	// address columns hold their text forms; lists are JSON or
	// comma-separated text, as nothing queries inside them.
	`CREATE TABLE settings (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE users (
		id         {{id}},
		name       {{label}} NOT NULL UNIQUE,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE auth_keys (
		id         {{id}},
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
		id          {{id}},
		name        {{label}} NOT NULL UNIQUE,
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
		version    {{id}},
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
		id         {{id}},
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
		id         {{id}},
		at         BIGINT NOT NULL,
		actor      TEXT NOT NULL,
		credential TEXT NOT NULL,
		remote     TEXT NOT NULL,
		action     TEXT NOT NULL,
		target     TEXT NOT NULL,
		detail     TEXT NOT NULL
	);`,
	// 6: users who sign in with the tailnet's identity provider (OIDC),
	// found by the provider's stable subject within its issuer, never by
	// email; their email and groups as of their last sign-in.
	`ALTER TABLE users ADD COLUMN oidc_issuer TEXT NOT NULL DEFAULT '';
	ALTER TABLE users ADD COLUMN oidc_subject TEXT NOT NULL DEFAULT '';
	ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
	ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '';
	CREATE UNIQUE INDEX users_oidc ON users(oidc_issuer, oidc_subject) WHERE oidc_subject <> '';`,
	// 7: who set each policy version (a user, or '' for the server's
	// administrator) and with which credential, for the policy's
	// history; versions set before this are by nobody known.
	`ALTER TABLE policies ADD COLUMN author TEXT NOT NULL DEFAULT '';
	ALTER TABLE policies ADD COLUMN credential TEXT NOT NULL DEFAULT '';`,
	// 8: interactive node logins waiting for approval, shared by every
	// server on the database: a login started at one server can be
	// approved at another. code is what the person and administrators
	// see; poll_hash the SHA-256 of the token only the waiting node
	// holds. user_id is set by the approval; the row is deleted when the
	// node takes its pre-auth key, and is void after expires.
	`CREATE TABLE node_logins (
		code       TEXT PRIMARY KEY,
		poll_hash  TEXT NOT NULL UNIQUE,
		hostname   TEXT NOT NULL,
		remote     TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires    BIGINT NOT NULL,
		user_id    BIGINT REFERENCES users(id) ON DELETE CASCADE
	);
	CREATE INDEX node_logins_remote ON node_logins(remote);`,
	// 9: the liveness rows of the control servers sharing the database
	// (servers.go): each server's change-feed origin and heartbeat
	// counter. Runtime state, not the tailnet's: never copied.
	`CREATE TABLE control_servers (
		origin  TEXT PRIMARY KEY,
		beat    BIGINT NOT NULL,
		beat_at BIGINT NOT NULL
	);`,
	// 10: the web console's one-time login links and sessions, and the
	// sign-ins in progress at the identity provider, shared by every
	// server on the database: a link printed at one server signs in at
	// another, a session made at one is good at all of them, and the
	// provider's redirect back may reach any. hash is the SHA-256 of the
	// link's or the session cookie's token, state_hash that of the
	// sign-in's OAuth state; the tokens themselves are never stored. A
	// session's user_id is NULL for the server's administrator (a login
	// link); a user's sessions end with the user. Rows are void after
	// expires and swept when new ones are made.
	`CREATE TABLE console_links (
		hash       TEXT PRIMARY KEY,
		created_at BIGINT NOT NULL,
		expires    BIGINT NOT NULL
	);
	CREATE TABLE console_sessions (
		hash       TEXT PRIMARY KEY,
		user_id    BIGINT REFERENCES users(id) ON DELETE CASCADE,
		created_at BIGINT NOT NULL,
		last_seen  BIGINT NOT NULL,
		expires    BIGINT NOT NULL
	);
	CREATE INDEX console_sessions_user ON console_sessions(user_id);
	CREATE TABLE oidc_flows (
		state_hash TEXT PRIMARY KEY,
		purpose    TEXT NOT NULL,
		data       TEXT NOT NULL,
		expires    BIGINT NOT NULL
	);`,
	// 11: sliding console sessions: a session used is extended to
	// last_seen + idle (Unix nanoseconds of lifetime, 0: never
	// extended), never past max_expires, the absolute end set at
	// sign-in; it is written with last_seen, at most once a minute.
	`ALTER TABLE console_sessions ADD COLUMN idle BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE console_sessions ADD COLUMN max_expires BIGINT NOT NULL DEFAULT 0;`,
}

// init applies pending migrations and loads (or makes) the settings.
func (s *sqlStore) init(ctx context.Context) error {
	if err := s.migrate(ctx); err != nil {
		return err
	}
	return s.write(ctx, func(tx *dbTx) error {
		// Several servers may open a new database at once: the first
		// one's ULA prefix wins and everyone reads it back.
		p, err := newULA()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ('ula_prefix', ?), ('next_v4_index', '1')
			ON CONFLICT (name) DO NOTHING`, p.String()); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
		ula, err := getSetting(ctx, tx, "ula_prefix")
		if err != nil {
			return fmt.Errorf("settings: %w", err)
		}
		p, err = netip.ParsePrefix(ula)
		if err != nil || p.Bits() != 48 || !p.Addr().Is6() {
			return fmt.Errorf("settings: stored ula_prefix %q is not an IPv6 /48", ula)
		}
		s.ula = p
		return nil
	})
}

// ErrSchemaTooNew: the database was migrated by a newer weft than this one.
var ErrSchemaTooNew = errors.New("store: database schema is newer than this weft")

// SchemaVersion is the schema version this build migrates databases to.
func SchemaVersion() int { return len(migrations) }

// migrate applies, in one transaction, every migration newer than the
// database's version, and refuses a database whose version is newer than
// this build's. Running it again is a no-op; processes opening a new
// database at once apply each migration exactly once (SQLite's IMMEDIATE
// transaction, PostgreSQL's advisory lock).
func (s *sqlStore) migrate(ctx context.Context) error {
	return s.write(ctx, func(tx *dbTx) error {
		if s.d.migrateLock != "" {
			if _, err := tx.ExecContext(ctx, s.d.migrateLock); err != nil {
				return fmt.Errorf("migrations: lock: %w", err)
			}
		}
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
			return fmt.Errorf("%w: the %s database is at schema version %d, this weft build knows versions up to %d; run a newer weft (or restore a backup from before the upgrade)",
				ErrSchemaTooNew, s.d.name, have, len(migrations))
		}
		for v := have + 1; v <= len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, s.d.ddl(migrations[v-1])); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, s.now().UnixNano()); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		return nil
	})
}

func getSetting(ctx context.Context, tx *dbTx, name string) (string, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	return v, err
}

func putSetting(ctx context.Context, tx *dbTx, name, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	if err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	return nil
}

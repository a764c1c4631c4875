package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgMaxConns caps one store's connections to PostgreSQL. Writes queue
// on a few row locks anyway (see Register); the cap keeps several servers
// on one database well under PostgreSQL's default max_connections (100).
const pgMaxConns = 16

// IsPostgresURL reports whether dbURL names a PostgreSQL database: a libpq
// URL, postgres://... or postgresql://...
func IsPostgresURL(dbURL string) bool {
	return strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://")
}

// OpenPostgres connects to the PostgreSQL database dbURL (a libpq URL such
// as postgres://weft@db.example/weft or, over a unix socket,
// postgres:///weft?host=/run/postgresql), applies any pending schema
// migrations, and returns a Store. Close it when done.
//
// The database must exist; the role needs to create tables in it (on the
// first start and after upgrades) and to read and write them. Several
// stores, in one process or many, may share one database: allocation of
// addresses, names and single-use keys is decided by its constraints and
// row locks.
func OpenPostgres(ctx context.Context, dbURL string, opts Options) (Store, error) {
	return openPostgres(ctx, dbURL, opts)
}

func openPostgres(ctx context.Context, dbURL string, opts Options) (*sqlStore, error) {
	where := RedactURL(dbURL)
	if !IsPostgresURL(dbURL) {
		return nil, fmt.Errorf("store: %q is not a PostgreSQL URL: give postgres://USER@HOST/DB or postgres:///DB?host=/run/postgresql", where)
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL URL %s: %w", where, err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: connecting to PostgreSQL at %s: %w (is the server running, does the database exist, may this user connect?)", where, err)
	}
	s := &sqlStore{db: db, d: newPostgresDialect(), now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: opening PostgreSQL at %s: %w", where, err)
	}
	return s, nil
}

// pgRetryable reports whether err is a PostgreSQL error that running the
// transaction again can cure: serialization failure, deadlock, or a unique
// violation caused by a concurrent writer (the next run sees its row and
// takes another name or address, or reports ErrExists).
func pgRetryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01", "23505":
		return true
	}
	return false
}

// RedactURL returns a database URL fit for logs and errors: any password
// is replaced by "xxxxx".
func RedactURL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.Scheme == "" {
		if strings.Contains(dbURL, "password") {
			return "(a connection string with a password)"
		}
		return dbURL
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

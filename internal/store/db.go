package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"time"
	"weft/internal/tailnet"
)

// sqlStore implements Store over database/sql. Its queries use only SQL
// PostgreSQL shares (with "?" placeholders, which a PostgreSQL driver
// would need rewritten to $n); the SQLite specifics (DSN, pragmas, DDL)
// sit in sqlite.go.
type sqlStore struct {
	db  *sql.DB
	now func() time.Time
	ula netip.Prefix // the tailnet's IPv6 /48, set once by init
}

var _ Store = (*sqlStore)(nil)

// write runs fn in a transaction and commits it if fn returns nil. On
// SQLite the transaction takes the write lock at BEGIN (see Open).
func (s *sqlStore) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.tx(ctx, nil, fn)
}

// read runs fn in a read-only transaction, for a consistent snapshot across
// several queries (a node and its routes). On SQLite in WAL mode it neither
// waits for nor blocks the writer.
func (s *sqlStore) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.tx(ctx, &sql.TxOptions{ReadOnly: true}, fn)
}

func (s *sqlStore) tx(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (s *sqlStore) Close() error { return s.db.Close() }

func (s *sqlStore) AddressPrefixes() (v4, v6 netip.Prefix) { return tailnet.V4Range, s.ula }

// Times are stored as Unix nanoseconds, with 0 for the zero time.
func toDB(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromDB(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

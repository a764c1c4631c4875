package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"weft/internal/tailnet"
)

// sqlStore implements Store over database/sql, on SQLite (sqlite.go) or
// PostgreSQL (postgres.go). Its queries use only SQL both share, written
// with "?" placeholders that the dialect rewrites in one place (dbTx).
type sqlStore struct {
	db  *sql.DB
	d   *dialect
	now func() time.Time
	ula netip.Prefix // the tailnet's IPv6 /48, set once by init

	// writeTurn, when not nil (SQLite), lets one write transaction of
	// this handle run at a time; the others wait their turn here, in
	// order and for as long as their context allows. SQLite has one
	// writer per database anyway, but its own wait is a poll that
	// sleeps up to 100 ms between tries and gives up after the busy
	// timeout: with a hundred writers polling, a late one kept losing
	// to newcomers and failed with SQLITE_BUSY after 10 s under a slow
	// disk. Queued here, only one connection per handle contends for
	// SQLite's lock, with the other processes on the same file.
	writeTurn chan struct{}
	// retrying, when not nil, is called with the error of each write
	// transaction that is about to run again (tests watch for it).
	retrying func(error)
}

var _ Store = (*sqlStore)(nil)

// querier is what *sql.DB and *sql.Tx share and the queries use.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rowScanner is what a scan function reads one row from: *sql.Row or
// *sql.Rows.
type rowScanner interface{ Scan(...any) error }

// queryAll runs query in tx and returns each row it finds as scan reads
// it, in the query's order.
func queryAll[T any](ctx context.Context, tx *dbTx, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// dbTx runs the store's queries in a transaction (or directly on the pool,
// see direct), rewriting their placeholders for the dialect.
type dbTx struct {
	q querier
	d *dialect
}

func (t *dbTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.q.ExecContext(ctx, t.d.rebind(query), args...)
}

func (t *dbTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.q.QueryContext(ctx, t.d.rebind(query), args...)
}

func (t *dbTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.q.QueryRowContext(ctx, t.d.rebind(query), args...)
}

// direct runs single queries outside a transaction.
func (s *sqlStore) direct() *dbTx { return &dbTx{q: s.db, d: s.d} }

// maxWriteTries bounds how often write runs a transaction that failed
// with a retryable error (see dialect.retryable). On SQLite each try
// waits up to the busy timeout for another process's write lock.
const maxWriteTries = 20

// write runs fn in a transaction and commits it if fn returns nil. On
// SQLite the transaction waits for this handle's write turn (writeTurn)
// and takes the write lock at BEGIN (see Open); one that found the
// database locked past the busy timeout, by another process on the same
// file, runs again. On PostgreSQL a transaction that lost a race to
// another writer (a serialization failure, a deadlock or a unique
// violation) runs again. So fn must only write through tx and set
// results it can set again.
//
// When ctx carries an audit entry (WithAudit) not yet recorded, write
// records it in the same transaction, after fn: the change and its audit
// row commit together or not at all.
func (s *sqlStore) write(ctx context.Context, fn func(tx *dbTx) error) error {
	slot := auditSlotFrom(ctx)
	if slot != nil {
		inner := fn
		fn = func(tx *dbTx) error {
			if err := inner(tx); err != nil {
				return err
			}
			return slot.insert(ctx, tx, s.now())
		}
	}
	return s.writeTx(ctx, fn, slot)
}

// writeTx runs fn in a write transaction, again after a retryable
// failure, and marks slot (nil: none) recorded once it committed.
func (s *sqlStore) writeTx(ctx context.Context, fn func(tx *dbTx) error, slot *auditSlot) error {
	for try := 1; ; try++ {
		err := s.txInTurn(ctx, fn)
		if err == nil && slot != nil {
			slot.done.Store(true)
		}
		if err == nil || s.d.retryable == nil || !s.d.retryable(err) || try == maxWriteTries {
			return err
		}
		if s.retrying != nil {
			s.retrying(err)
		}
		// A short random pause spreads out writers that collided.
		pause := time.Duration(rand.Int64N(int64(try) * int64(2*time.Millisecond)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// txInTurn runs fn in one write transaction, in this handle's write turn
// when it has one.
func (s *sqlStore) txInTurn(ctx context.Context, fn func(tx *dbTx) error) error {
	if s.writeTurn != nil {
		select {
		case s.writeTurn <- struct{}{}:
			defer func() { <-s.writeTurn }()
		case <-ctx.Done():
			return fmt.Errorf("waiting for the other writes to the database: %w", ctx.Err())
		}
	}
	return s.tx(ctx, s.d.writeTx, fn)
}

// read runs fn in a read-only transaction, for a consistent snapshot across
// several queries (a node and its routes). On SQLite in WAL mode it neither
// waits for nor blocks the writer; on PostgreSQL it is REPEATABLE READ.
func (s *sqlStore) read(ctx context.Context, fn func(tx *dbTx) error) error {
	return s.tx(ctx, s.d.readTx, fn)
}

func (s *sqlStore) tx(ctx context.Context, opts *sql.TxOptions, fn func(tx *dbTx) error) error {
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&dbTx{q: tx, d: s.d}); err != nil {
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

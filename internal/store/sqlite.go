package store

import (
	"context"
	"database/sql"
	"fmt"
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
//
// Write transactions of one Store take turns in the process (so its
// writers queue rather than poll SQLite's lock), and one that still found
// the database locked past the busy timeout, by another process on the
// same file, runs again.
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
	busy := 10 * time.Second
	if opts.busyTimeout > 0 {
		busy = opts.busyTimeout
	}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	s := &sqlStore{db: db, d: newSQLiteDialect(), now: opts.Now, writeTurn: make(chan struct{}, 1)}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return s, nil
}

package store

import (
	"context"
	"errors"
)

// Open opens (creating if needed) the SQLite database at path, applies any
// pending schema migrations, and returns a Store. The database runs in WAL
// mode with synchronous=FULL so that a method that returned nil survives a
// kill -9 or power loss. Close it when done.
func Open(ctx context.Context, path string, opts Options) (Store, error) {
	return nil, errors.New("store: Open: SQLite implementation lands in the next commit")
}

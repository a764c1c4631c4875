package main

import (
	"fmt"
	"log/slog"
	"time"

	"weft/internal/changefeed"
)

// haPersistInterval is how often a server on a shared database writes its
// nodes' changed runtime facts (endpoints, host facts): the other servers
// learn of them only once written, so it is kept near the batch window
// (control.DefaultBatchWindow) rather than the single server's second.
const haPersistInterval = 50 * time.Millisecond

// serverFeed returns the change feed of a server whose database is dbURL
// (docs/changefeed.md): LISTEN/NOTIFY on a PostgreSQL database, which
// other servers may share; nil for SQLite, which one server owns (the
// control server then uses a feed of its own with nobody on it). The
// persist interval goes with it; close ends the feed's publishing
// connection.
func serverFeed(dbURL string, log *slog.Logger) (feed changefeed.Feed, persist time.Duration, close func(), err error) {
	if dbURL == "" {
		return nil, 0, func() {}, nil
	}
	pg, err := changefeed.NewPostgres(dbURL, log)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("server: change feed: %w", err)
	}
	return pg, haPersistInterval, func() { pg.Close() }, nil
}

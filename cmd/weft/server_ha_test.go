package main

import (
	"testing"

	"weft/internal/changefeed"
)

func TestServerFeed(t *testing.T) {
	tests := []struct {
		name    string
		db      string
		wantPG  bool
		wantErr bool
	}{
		{"SQLite: the server's own feed", "", false, false},
		{"PostgreSQL over a unix socket", "postgres:///weft?host=/run/postgresql", true, false},
		{"PostgreSQL over TCP", "postgres://weft@db.example/weft", true, false},
		{"bad URL", "postgres://weft@db.example:notaport/weft", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			feed, persist, closeFeed, err := serverFeed(tt.db, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("serverFeed(%q): %v", tt.db, err)
			}
			if err != nil {
				return
			}
			defer closeFeed()
			_, isPG := feed.(*changefeed.Postgres)
			if isPG != tt.wantPG || (persist != 0) != tt.wantPG {
				t.Fatalf("serverFeed(%q) = %T, persist %v", tt.db, feed, persist)
			}
		})
	}
}

package store

import (
	"strings"
	"testing"
)

func TestDollarPlaceholders(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`INSERT INTO t VALUES (?, '', ?)`, `INSERT INTO t VALUES ($1, '', $2)`},
		{`SELECT '?', "a?b", ? FROM t`, `SELECT '?', "a?b", $1 FROM t`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{`VALUES (?,?,?,?,?,?,?,?,?,?,?)`, `VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`},
	} {
		if got := dollarPlaceholders(tt.in); got != tt.want {
			t.Errorf("dollarPlaceholders(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := newSQLiteDialect().rebind(`a = ?`); got != `a = ?` {
		t.Errorf("SQLite rebind changed the query: %q", got)
	}
}

// TestMigrationWords checks that every {{word}} in the migrations has a
// spelling in every dialect: a word left in the DDL would fail only on
// the database that lacks it.
func TestMigrationWords(t *testing.T) {
	for _, d := range []*dialect{newSQLiteDialect(), newPostgresDialect()} {
		for i, m := range migrations {
			if ddl := d.ddl(m); strings.Contains(ddl, "{{") {
				t.Errorf("%s: migration %d keeps a {{word}}: %s", d.name, i+1, ddl)
			}
		}
	}
}

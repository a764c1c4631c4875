package store

import (
	"errors"
	"syscall"
)

// Full reports whether err means the database could not write because
// its disk (or quota) is full: SQLite's SQLITE_FULL, PostgreSQL's
// disk_full (SQLSTATE 53100), or ENOSPC from the filesystem. The write
// did not happen (a transaction is all or nothing), and freeing space is
// the fix, so callers say that rather than "internal error". It looks at
// the drivers' errors through small interfaces, without importing them.
func Full(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) && coded.Code()&0xff == sqliteFull {
		return true
	}
	var pg interface{ SQLState() string }
	return errors.As(err, &pg) && pg.SQLState() == pgDiskFull
}

const (
	sqliteFull = 13      // SQLITE_FULL
	pgDiskFull = "53100" // disk_full
)

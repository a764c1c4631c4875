//go:build !linux

package pgtest

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// serverCredential runs PostgreSQL as the current user; outside Linux
// pgtest does not switch users, so tests must not run as root.
func serverCredential() (*owner, error) {
	if os.Geteuid() == 0 {
		return nil, errors.New("pgtest: outside Linux, run the tests as an unprivileged user (PostgreSQL refuses root)")
	}
	return nil, nil
}

func sysProcAttr(*owner) *syscall.SysProcAttr { return nil }

// anyProcessIn cannot look at other processes here; it waits a moment for
// backends to exit instead.
func anyProcessIn(string) bool {
	time.Sleep(500 * time.Millisecond)
	return false
}

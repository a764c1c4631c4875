//go:build linux

package pgtest

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverCredential returns the user to run PostgreSQL as: "nobody" when
// the test runs as root (PostgreSQL refuses root), else nil for the
// current user.
func serverCredential() (*owner, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the unprivileged user nobody to run PostgreSQL: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &owner{uid: uid, gid: gid}, nil
}

// sysProcAttr runs a child as cred and kills it if the test binary dies
// without cleaning up (a test timeout's panic), so no cluster outlives its
// test run.
func sysProcAttr(o *owner) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT}
	if o != nil {
		a.Credential = &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid), Groups: []uint32{}}
	}
	return a
}

// anyProcessIn reports whether a process has dir as its working directory
// (PostgreSQL backends run in the data directory).
func anyProcessIn(dir string) bool {
	links, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, l := range links {
		if d, err := os.Readlink(l); err == nil && d == dir {
			return true
		}
	}
	return false
}

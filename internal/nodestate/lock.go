package nodestate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFile is the file in the state directory a running daemon holds
// locked; it contains the daemon's PID, for the message a second daemon
// prints.
const lockFile = "daemon.lock"

// ErrLocked means another process holds the state directory's lock: a
// weft daemon already runs on it.
var ErrLocked = errors.New("nodestate: the state directory is in use")

// Lock takes the state directory for this process: a second weft daemon
// on the same directory would share its keys and preferences and undo its
// host changes, so it must not start. The lock is the operating system's
// (released when the process dies, also by SIGKILL), so a crash leaves no
// stale lock behind. The returned release gives it up; call it when the
// daemon stops.
func (d *Dir) Lock() (release func(), err error) {
	p := filepath.Join(d.path, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nodestate: %w", err)
	}
	if err := lockFileNB(f); err != nil {
		pid := holder(p)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: another weft daemon%s is already running on %s; stop it first, or give this daemon its own --state-dir and --socket", ErrLocked, pid, d.path)
		}
		return nil, fmt.Errorf("nodestate: locking %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		unlockFile(f)
		f.Close()
	}, nil
}

// holder returns " (pid N)" from the lock file at p, or "" if it says
// nothing readable.
func holder(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
		return fmt.Sprintf(" (pid %d)", n)
	}
	return ""
}

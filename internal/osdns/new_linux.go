package osdns

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// New picks how to change the OS's DNS: systemd-resolved's per-link DNS
// when resolved runs in this network namespace and owns /etc/resolv.conf,
// else the file itself. It refuses (ErrSharedFiles) to touch a file that
// belongs to another network namespace.
func New(opts Options) (Manager, error) {
	sameNet, netKnown := sameNamespace("net")
	sameMnt, mntKnown := sameNamespace("mnt")
	if netKnown && mntKnown && !sameNet && sameMnt {
		return nil, ErrSharedFiles
	}
	path := opts.resolvConf()
	if netKnown && sameNet && usesResolved(path) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		// When resolved's stub is named but resolved does not answer
		// on the bus, the file is all there is.
		if m, err := newResolved(ctx, opts); err == nil {
			return m, nil
		}
	}
	return NewResolvConf(opts), nil
}

// sameNamespace reports whether this process shares the namespace of the
// given kind with PID 1, and whether that could be told at all (reading
// PID 1's namespace needs privileges some sandboxes do not grant).
func sameNamespace(kind string) (same, known bool) {
	mine, err1 := os.Readlink("/proc/self/ns/" + kind)
	init, err2 := os.Readlink("/proc/1/ns/" + kind)
	if err1 != nil || err2 != nil {
		return false, false
	}
	return mine == init, true
}

// usesResolved reports whether the resolv.conf hands queries to
// systemd-resolved (its stub address, or a link into its directory).
func usesResolved(path string) bool {
	if target, err := filepath.EvalSymlinks(path); err == nil && strings.HasPrefix(target, "/run/systemd/resolve/") {
		return true
	}
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte("nameserver 127.0.0.53"))
}

// resolvedUpstreams is where resolved lists the servers it uses itself.
const resolvedUpstreams = "/run/systemd/resolve/resolv.conf"

func readFallback(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return b
}

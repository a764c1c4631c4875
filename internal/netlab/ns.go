//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces are bind-mounted, the same place the
// ip tool uses, so `ip netns exec` works on lab namespaces for debugging.
const netnsDir = "/run/netns"

// inNS runs fn on an OS thread switched into the named namespace. The
// thread is locked for fn's duration; if switching back fails the thread
// stays locked and dies with its goroutine rather than returning to the
// scheduler in the wrong namespace.
//
// Sockets created by fn stay in the namespace; processes started by fn
// (through os/exec, which forks from the calling thread) start in it.
// Goroutines started by fn do not run in it.
func inNS(name string, fn func() error) error {
	return onNSThread(func() error {
		target, err := netns.GetFromPath(filepath.Join(netnsDir, name))
		if err != nil {
			return fmt.Errorf("netlab: namespace %s: %w", name, err)
		}
		err = netns.Set(target)
		target.Close()
		if err != nil {
			return fmt.Errorf("netlab: enter namespace %s: %w", name, err)
		}
		return fn()
	})
}

// createNS creates the named namespace, bind-mounted under netnsDir,
// without moving the caller into it.
func createNS(name string) error {
	if err := prepareNetnsDir(); err != nil {
		return err
	}
	return onNSThread(func() error {
		h, err := netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("netlab: create namespace %s: %w", name, err)
		}
		h.Close()
		return nil
	})
}

// prepareNetnsDir makes netnsDir a shared mount point of its own, as the
// ip tool does before its first `ip netns add`. Namespace files mounted
// on a plain directory are hidden when something later makes it a mount
// point (an `ip netns add` run by hand does): they can then be neither
// unmounted nor removed by name, and the lab's namespaces outlive it.
// The check and the bind run under a lock on the directory, so two labs
// starting at once do not stack two binds.
func prepareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	dir, err := os.Open(netnsDir)
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("netlab: lock %s: %w", netnsDir, err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN)
	err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err = unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("netlab: make %s a shared mount point: %w", netnsDir, err)
	}
	return nil
}

// onNSThread runs fn on a locked OS thread of its own, which fn may move
// to another namespace, and then moves the thread back. The thread is
// unlocked only if it is back in the namespace it started in; otherwise
// it dies with its goroutine rather than returning to the scheduler in
// the wrong namespace (netns.NewNamed, for one, may unshare before it
// fails).
func onNSThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netlab: current namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// deleteNS removes the named namespace; a missing one is not an error. The
// namespace itself lives on until its last process exits, which is why
// killNSProcs runs first.
func deleteNS(name string) error {
	err := netns.DeleteNamed(name)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
		// EINVAL: not a mount point (a half-created namespace file).
		_ = os.Remove(filepath.Join(netnsDir, name))
		return nil
	}
	return fmt.Errorf("netlab: delete namespace %s: %w", name, err)
}

// listNS returns the names of namespaces starting with prefix.
func listNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// nsID identifies a namespace by the nsfs inode it is made of.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, false
	}
	return nsID{uint64(st.Dev), st.Ino}, true
}

// procsInNS returns the PIDs of live processes whose network namespace is
// one of names. The calling process is never included.
func procsInNS(names []string) []int {
	want := map[nsID]bool{}
	for _, n := range names {
		if id, ok := statNS(filepath.Join(netnsDir, n)); ok {
			want[id] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid)); ok && want[id] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidInNS reports whether pid lives in one of the named namespaces. It
// guards killing a recorded PID that may since have been reused.
func pidInNS(pid int, names []string) bool {
	id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid))
	if !ok {
		return false
	}
	for _, n := range names {
		if nid, ok := statNS(filepath.Join(netnsDir, n)); ok && nid == id {
			return true
		}
	}
	return false
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// stopPIDs sends SIGTERM to pids, waits up to grace for them to exit and
// then sends SIGKILL to the rest.
func stopPIDs(pids []int, grace time.Duration) {
	if len(pids) == 0 {
		return
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		left := false
		for _, p := range pids {
			if alive(p) {
				left = true
				break
			}
		}
		if !left {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range pids {
		if alive(p) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// writeSysctl sets a sysctl under /proc/sys of the calling thread's network
// namespace (/proc/sys/net is resolved per thread).
func writeSysctl(key, val string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		return fmt.Errorf("netlab: sysctl %s=%s: %w", key, val, err)
	}
	return nil
}

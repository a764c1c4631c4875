//go:build linux

package osnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Forwarding sysctls weft turns on when this node forwards for the tailnet
// (exit node or subnet router).
const (
	sysctlIPv4Forward = "net/ipv4/ip_forward"
	sysctlIPv6Forward = "net/ipv6/conf/all/forwarding"
)

// sysctls reads and writes /proc/sys. The files under /proc/sys/net belong
// to the network namespace of the thread that opens them, so the Router
// calls these only from its own namespace (see Router.inNS).
type sysctls struct {
	root string // "/proc/sys" outside tests
}

func (s sysctls) path(name string) string { return filepath.Join(s.root, filepath.FromSlash(name)) }

func (s sysctls) get(name string) (string, error) {
	b, err := os.ReadFile(s.path(name))
	if err != nil {
		return "", fmt.Errorf("osnet: read sysctl %s: %w", strings.ReplaceAll(name, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (s sysctls) set(name, value string) error {
	f, err := os.OpenFile(s.path(name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("osnet: write sysctl %s: %w", strings.ReplaceAll(name, "/", "."), err)
	}
	_, werr := f.WriteString(value + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("osnet: write sysctl %s=%s: %w", strings.ReplaceAll(name, "/", "."), value, err)
	}
	return nil
}

// sysctlSrcValidMark lets reverse-path filtering see a packet's mark, so
// replies whose mark weft restored from conntrack pass a strict check.
const sysctlSrcValidMark = "net/ipv4/conf/all/src_valid_mark"

// savedSysctls remembers the sysctls weft turned on, so they can be put
// back exactly: a sysctl that was already on is not remembered and is
// never turned off by weft.
type savedSysctls struct {
	saved map[string]string // sysctl name -> value before weft set it to 1
}

// turnOn sets each sysctl to 1, remembering the old value. It returns the
// problems in plain words; callers decide whether that is fatal.
func (f *savedSysctls) turnOn(s sysctls, names ...string) error {
	var errs []error
	for _, name := range names {
		if _, changed := f.saved[name]; changed {
			continue
		}
		old, err := s.get(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if old == "1" {
			continue
		}
		if err := s.set(name, "1"); err != nil {
			errs = append(errs, err)
			continue
		}
		if f.saved == nil {
			f.saved = map[string]string{}
		}
		f.saved[name] = old
	}
	return errors.Join(errs...)
}

// restore puts back the old value of each named sysctl weft changed.
func (f *savedSysctls) restore(s sysctls, names ...string) error {
	var errs []error
	for _, name := range names {
		old, changed := f.saved[name]
		if !changed {
			continue
		}
		if err := s.set(name, old); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(f.saved, name)
	}
	return errors.Join(errs...)
}

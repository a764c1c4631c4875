//go:build !linux && !darwin && !windows

package osdns

import "net/netip"

// New returns a Manager that rewrites the resolv.conf file on Unix
// systems other than Linux; Windows and macOS integration is to come, and
// there the file is not what the system resolver reads, which New says.
func New(opts Options) (Manager, error) {
	return nil, errUnsupported
}

// AddLoopback is not supported on this OS yet.
func AddLoopback(addrs []netip.Addr) error { return errUnsupported }

// RemoveLoopback has nothing to remove on this OS.
func RemoveLoopback() error { return nil }

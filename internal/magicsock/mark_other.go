//go:build !linux

package magicsock

import "syscall"

// markControl does nothing: SO_MARK is Linux's.
func markControl(uint32) func(network, address string, c syscall.RawConn) error { return nil }

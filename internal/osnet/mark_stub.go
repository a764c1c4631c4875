//go:build !linux && !darwin && !windows

package osnet

import (
	"net"
	"syscall"
)

// MarkControl returns nil: socket marks (SO_MARK) are Linux's, and on
// other systems weft does not route its own traffic by mark.
func MarkControl(uint32) func(network, address string, c syscall.RawConn) error { return nil }

// Dialer returns a plain net.Dialer; see MarkControl.
func Dialer(uint32) *net.Dialer { return &net.Dialer{} }

// ListenConfig returns a plain net.ListenConfig; see MarkControl.
func ListenConfig(uint32) *net.ListenConfig { return &net.ListenConfig{} }

//go:build !linux

package speedtest

import "net"

// retransmits is unknown outside Linux.
func retransmits(*net.TCPConn) int64 { return -1 }

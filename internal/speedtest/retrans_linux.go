package speedtest

import (
	"net"

	"golang.org/x/sys/unix"
)

// retransmits is the kernel's count of segments c sent again; -1 if it
// cannot say.
func retransmits(c *net.TCPConn) int64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	var n int64 = -1
	rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = int64(ti.Total_retrans)
		}
	})
	return n
}

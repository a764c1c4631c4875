package magicsock

import (
	"syscall"

	"weft/internal/osnet"
)

// markControl sets SO_MARK on a new socket (osnet.MarkControl), if mark
// is not zero: an unmarked socket needs no CAP_NET_ADMIN.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return osnet.MarkControl(mark)
}

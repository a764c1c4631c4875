package magicsock

import (
	"syscall"

	"weft/internal/osnet"
)

// markControl makes a new socket bypass an exit node's routes as every
// other socket of weft's does (osnet.MarkControl: SO_MARK on Linux, bound
// to the default route's interface on macOS and Windows), if mark is not
// zero: an unmarked socket needs no CAP_NET_ADMIN.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return osnet.MarkControl(mark)
}

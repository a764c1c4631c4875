package magicsock

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExtraSocketMark checks that extra sockets carry the SO_MARK that
// keeps tunnel traffic out of the tunnel.
func TestExtraSocketMark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting SO_MARK needs root (CAP_NET_ADMIN)")
	}
	pc, err := HostNetwork{}.ListenUDP4(0x5eed)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	raw, err := pc.(udpPacketConn).c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var gerr error
	raw.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	if mark != 0x5eed {
		t.Fatalf("SO_MARK = %#x; want 0x5eed", mark)
	}
}

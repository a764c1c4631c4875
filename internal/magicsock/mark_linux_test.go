package magicsock

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/osnet"
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

// TestSockBindMarksEverySocket runs the bind macOS uses (newHostBind
// "darwin") with the host's own markControl, which on Linux sets SO_MARK
// where on macOS it binds to the default route's interface: after SetMark
// every one of its sockets (both families of both binds) carries the
// mark, and so does every socket of the next Open, before any SetMark.
func TestSockBindMarksEverySocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting SO_MARK needs root (CAP_NET_ADMIN)")
	}
	fb := newHostBind("darwin").(*familyBind)
	check := func(step string) {
		t.Helper()
		n := 0
		for _, b := range []conn.Bind{fb.v4, fb.v6} {
			for _, s := range *b.(*sockBind).socks.Load() {
				mark, err := osnet.SocketMark(s.c)
				if err != nil || mark != 0x5eed {
					t.Errorf("%s: %s socket %v has SO_MARK %#x (%v); want 0x5eed", step, s.network, s.c.LocalAddr(), mark, err)
				}
				n++
			}
		}
		if n < 2 {
			t.Errorf("%s: %d sockets checked; want at least one per bind", step, n)
		}
	}
	if _, _, err := fb.Open(0); err != nil {
		t.Fatal(err)
	}
	if err := fb.SetMark(0x5eed); err != nil {
		t.Fatal(err)
	}
	check("after SetMark")
	fb.Close()
	if _, _, err := fb.Open(0); err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	check("after reopening")
}

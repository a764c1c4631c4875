//go:build linux

package osnet

import (
	"context"
	"net"
	"syscall"
	"testing"
	"weft/internal/tstest"
)

func TestMarkedSockets(t *testing.T) {
	newLab(t, 1)
	const mark = 0x57000000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tstest.ServeConns(ln, nil)

	dial := func(d *net.Dialer) syscall.Conn {
		t.Helper()
		c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(syscall.Conn)
	}
	listenUDP := func(lc *net.ListenConfig) syscall.Conn {
		t.Helper()
		c, err := lc.ListenPacket(context.Background(), "udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(syscall.Conn)
	}
	tests := []struct {
		name string
		conn func() syscall.Conn
		want uint32
	}{
		{"marked TCP dialer", func() syscall.Conn { return dial(Dialer(mark)) }, mark},
		{"plain TCP dialer", func() syscall.Conn { return dial(&net.Dialer{}) }, 0},
		{"marked UDP listener", func() syscall.Conn { return listenUDP(ListenConfig(mark)) }, mark},
		{"plain UDP listener", func() syscall.Conn { return listenUDP(&net.ListenConfig{}) }, 0},
		{"control func on dialer", func() syscall.Conn { return dial(&net.Dialer{Control: MarkControl(0x1234)}) }, 0x1234},
	}
	// Subtests run on their own goroutines, outside this test's namespace,
	// so the sockets are made here, in order, and only checked there.
	for _, tc := range tests {
		c := tc.conn()
		got, err := SocketMark(c)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: SO_MARK = %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

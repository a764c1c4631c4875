package connlimit

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestPerAddrCap: a source address gets at most the cap in open
// connections; one more is closed at once, and a slot freed by a close is
// usable again.
func TestPerAddrCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, 2, nil)
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	takeAccepted := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("connection within the cap not accepted")
		}
		return nil
	}
	dial()
	first := takeAccepted()
	dial()
	takeAccepted()

	over := dial()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection from one address: read %v, want EOF (closed by the server)", err)
	}
	if l.Refused() != 1 {
		t.Fatalf("Refused() = %d, want 1", l.Refused())
	}
	select {
	case c := <-accepted:
		t.Fatalf("connection over the cap was handed out: %v", c.RemoteAddr())
	default:
	}

	first.Close()
	first.Close() // a second Close gives back nothing more
	dial()
	takeAccepted()
	over2 := dial()
	over2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection over the cap after a double Close: %v", err)
	}
}

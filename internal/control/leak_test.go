package control

import (
	"context"
	"net"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"weft/internal/store"
)

// TestCloseLeavesNoGoroutines connects nodes, closes the server under
// them, and checks that every goroutine the server started has ended.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	var nodes []*simNode
	for _, name := range []string{"a", "b", "c"} {
		n := h.newSim(name)
		n.mustRegister(t, k)
		if err := n.stream(context.Background()); err != nil {
			t.Fatal(err)
		}
		n.next(t)
		nodes = append(nodes, n)
	}
	h.close()
	for _, n := range nodes {
		select {
		case <-n.errc:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s's stream still open after server Close", n.name)
		}
		n.close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gatedListener hands out connections whose first Close can be held at a
// gate, to stand for a connection that is slow to close.
type gatedListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*gatedConn
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &gatedConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, gc)
	l.mu.Unlock()
	return gc, nil
}

func (l *gatedListener) last() *gatedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[len(l.conns)-1]
}

type gatedConn struct {
	net.Conn
	mu     sync.Mutex
	gate   chan struct{} // the first Close waits for it; nil: no wait
	closed chan struct{} // closed when that first Close returned
}

func (c *gatedConn) hold(gate chan struct{}) {
	c.mu.Lock()
	c.gate, c.closed = gate, make(chan struct{})
	c.mu.Unlock()
}

func (c *gatedConn) Close() error {
	c.mu.Lock()
	gate, closed := c.gate, c.closed
	c.gate = nil
	c.mu.Unlock()
	if gate == nil {
		return c.Conn.Close()
	}
	<-gate
	defer close(closed)
	return c.Conn.Close()
}

// TestCloseWaitsForStreamClosers replaces a node's stream while closing
// the old one is slow, and checks that Server.Close waits for that close
// to finish, and that a second Close is harmless.
func TestCloseWaitsForStreamClosers(t *testing.T) {
	h := newHarness(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := &gatedListener{Listener: ln}
	hs := httptest.NewUnstartedServer(h.srv.Handler())
	hs.Listener.Close()
	hs.Listener = gl
	hs.Start()
	defer hs.Close()
	h.url = hs.URL

	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	first := h.newSim("a")
	first.mustRegister(t, k)
	if err := first.stream(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.next(t)
	defer first.close()
	gate := make(chan struct{})
	old := gl.last()
	old.hold(gate)

	// The same node streams again: the newer stream wins, and the
	// server closes the old one on a goroutine of its own, which now
	// waits at the gate.
	second := h.newSim("a")
	second.machine, second.node, second.disco = first.machine, first.node, first.disco
	if err := second.stream(context.Background()); err != nil {
		t.Fatal(err)
	}
	second.next(t)
	defer second.close()

	closed := make(chan struct{})
	go func() {
		h.srv.Close()
		close(closed)
	}()
	// Close cancels the old channel's reader, which closes the socket
	// too. Whichever of the two closes comes first waits at the gate;
	// the other one closes the socket, so the old stream ends while a
	// close still waits.
	select {
	case <-first.errc:
	case <-time.After(10 * time.Second):
		t.Fatal("old stream still open after Close began")
	}
	// Give a Close that does not wait time to return wrongly.
	time.Sleep(100 * time.Millisecond)
	select {
	case <-closed:
		t.Fatal("Server.Close returned while a stream's close was still running")
	default:
	}
	close(gate)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Server.Close did not return after the slow close ended")
	}
	select {
	case <-old.closed:
	default:
		t.Fatal("Server.Close returned before the old stream's close did")
	}
	if err := h.srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

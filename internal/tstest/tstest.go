// Package tstest holds helpers shared by weft's tests: waiting for a
// condition, a buffer that several goroutines may write, and filling a
// struct's every field for drift guards, and a private certificate
// authority for TLS tests.
package tstest

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// DefaultWait is how long Eventually waits when a test gives no bound.
const DefaultWait = 20 * time.Second

// Eventually polls cond every 10 ms until it holds, and fails the test
// with what when it has not held within DefaultWait.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, DefaultWait, what, cond)
}

// EventuallyWithin is Eventually with its own bound.
func EventuallyWithin(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer safe for concurrent use, for logs that
// goroutines write while a test reads them.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ServeConns accepts connections on ln until it is closed, handing each
// to handle on the accepting goroutine; a nil handle closes each at once.
// It returns at once.
func ServeConns(ln net.Listener, handle func(net.Conn)) {
	if handle == nil {
		handle = func(c net.Conn) { c.Close() }
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
}

// ServeUDP hands every datagram pc receives, with its sender, to handle
// on one reading goroutine until pc is closed. It returns at once.
func ServeUDP(pc *net.UDPConn, handle func(pkt []byte, from netip.AddrPort)) {
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			handle(buf[:n], from)
		}
	}()
}

// Clock is a settable clock for code that takes a Now func: it stands
// still until Advance moves it. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

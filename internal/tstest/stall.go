package tstest

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// StallListener accepts TCP connections and reads them forever without
// answering: an address whose connect works but whose later packets
// vanish (the TLS ClientHello or an upgrade request swallowed by a
// middlebox or a broken path MTU). It counts the connections and those
// the client closed.
type StallListener struct {
	ln net.Listener
	wg sync.WaitGroup

	mu               sync.Mutex
	accepted, closed int
	conns            []net.Conn
}

// NewStallListener serves ln as a StallListener until the test ends,
// when it closes ln and its connections (a client that failed may have
// left one open) and waits for them.
func NewStallListener(t testing.TB, ln net.Listener) *StallListener {
	s := &StallListener{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted++
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				io.Copy(io.Discard, c) // until the client closes
				s.mu.Lock()
				s.closed++
				s.mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// Counts returns how many connections s accepted and how many of those
// the client has closed.
func (s *StallListener) Counts() (accepted, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.closed
}

// LostRace fails t unless the race the test ran went s's way: the
// client connected to working (remote is the address it connected to),
// dialled s's address too, and closed every connection s accepted.
func (s *StallListener) LostRace(t testing.TB, remote string, working net.Listener) {
	t.Helper()
	if remote != working.Addr().String() {
		t.Errorf("connected to %s, want the working %s", remote, working.Addr())
	}
	if accepted, _ := s.Counts(); accepted == 0 {
		t.Fatal("the stalled address was never dialled: the test did not exercise the race")
	}
	Eventually(t, "the stalled connection closed", func() bool {
		accepted, closed := s.Counts()
		return closed == accepted
	})
}

// StallAndWork listens on one port at two loopback addresses: stalled
// (::1, the preferred family, or 127.0.0.2 where the machine has no IPv6)
// and working (127.0.0.1). It retries while the port is taken at the
// second address.
func StallAndWork(t testing.TB) (stalled, working net.Listener) {
	t.Helper()
	stallIP := "::1"
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Logf("no IPv6 loopback (%v): the stalled address is 127.0.0.2", err)
		stallIP = "127.0.0.2"
	} else {
		ln.Close()
	}
	for range 20 {
		w, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(w.Addr().(*net.TCPAddr).Port)
		s, err := net.Listen("tcp", net.JoinHostPort(stallIP, port))
		if err == nil {
			return s, w
		}
		w.Close()
	}
	t.Fatal("no port free at both loopback addresses")
	return nil, nil
}

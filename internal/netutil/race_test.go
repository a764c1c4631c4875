package netutil

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"weft/internal/tstest"
)

// fakeNet is a dialer whose addresses behave as a test says: "ok" connects
// at once, "refused" fails at once, "blackhole" blocks until the dial's
// context ends (SYNs dropped: only the connect timeout ends it), "late"
// blocks until release is closed and then connects, whatever the context.
type fakeNet struct {
	behave  map[string]string
	release chan struct{}

	mu        sync.Mutex
	tried     []string
	returned  []string            // dials that have returned, in order
	peers     map[string]net.Conn // the far end of each connection made
	cancelled []string            // black-holed dials ended by their context
}

func (f *fakeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.tried = append(f.tried, addr)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.returned = append(f.returned, addr)
		f.mu.Unlock()
	}()
	switch f.behave[addr] {
	case "ok":
		return f.conn(addr), nil
	case "blackhole":
		<-ctx.Done()
		f.mu.Lock()
		f.cancelled = append(f.cancelled, addr)
		f.mu.Unlock()
		return nil, ctx.Err()
	case "late":
		<-f.release
		return f.conn(addr), nil
	}
	return nil, errors.New("connection refused")
}

func (f *fakeNet) conn(addr string) net.Conn {
	a, b := net.Pipe()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peers == nil {
		f.peers = map[string]net.Conn{}
	}
	f.peers[addr] = b
	return a
}

// race runs DialRace in the background and fails the test if it has not
// returned long after every head start: with a black-holed address and no
// deadline, a race that waited for it would never return.
func race(t *testing.T, f *fakeNet, addrs []string, headStart time.Duration) (net.Conn, error) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	done := make(chan res, 1)
	go func() {
		c, err := DialRace(t.Context(), f.dial, "tcp", addrs, headStart)
		done <- res{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("DialRace(%v) did not return: it is waiting for a black-holed address", addrs)
		return nil, nil
	}
}

const v4, v6 = "198.51.100.7:443", "[2001:db8::7]:443"

// TestDialRace: the connection comes from the first address that
// connects; a black-holed preferred address costs only the head start (the
// race returns though that dial never would), its dial is cancelled, and
// an address that fails at once hands over to the next without waiting.
func TestDialRace(t *testing.T) {
	hour := time.Hour // a head start no test waits out: only a failure starts the next
	for _, tc := range []struct {
		name      string
		behave    map[string]string
		headStart time.Duration
		wantFrom  string // "" wants an error
		wantTried []string
	}{
		{"preferred works", map[string]string{v6: "ok", v4: "ok"}, hour, v6, []string{v6}},
		{"preferred black-holed", map[string]string{v6: "blackhole", v4: "ok"}, time.Millisecond, v4, []string{v6, v4}},
		{"preferred refused: next at once", map[string]string{v4: "ok"}, hour, v4, []string{v6, v4}},
		{"all refused", nil, hour, "", []string{v6, v4}},
		{"black-holed and refused", map[string]string{v6: "blackhole"}, time.Millisecond, "", []string{v6, v4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeNet{behave: tc.behave}
			if tc.wantFrom == "" {
				// The caller's deadline ends a black-holed attempt.
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				defer cancel()
				c, err := DialRace(ctx, f.dial, "tcp", []string{v6, v4}, tc.headStart)
				if err == nil {
					c.Close()
					t.Fatal("connected with nothing reachable")
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				if !slices.Equal(f.tried, tc.wantTried) {
					t.Errorf("tried %v, want %v", f.tried, tc.wantTried)
				}
				return
			}
			c, err := race(t, f, []string{v6, v4}, tc.headStart)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f.mu.Lock()
			peer := f.peers[tc.wantFrom]
			tried := slices.Clone(f.tried)
			f.mu.Unlock()
			if !slices.Equal(tried, tc.wantTried) {
				t.Errorf("tried %v, want %v", tried, tc.wantTried)
			}
			// The connection is the one made to wantFrom: bytes written
			// on it come out of that address's far end.
			go c.Write([]byte("x"))
			buf := make([]byte, 1)
			if _, err := io.ReadFull(peer, buf); err != nil {
				t.Fatalf("connection is not the one to %s: %v", tc.wantFrom, err)
			}
			// Every losing dial has returned (cancelled): none leaks.
			tstest.Eventually(t, "every dial returned", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return len(f.returned) == len(f.tried)
			})
			if tc.behave[v6] == "blackhole" {
				f.mu.Lock()
				defer f.mu.Unlock()
				if !slices.Equal(f.cancelled, []string{v6}) {
					t.Errorf("cancelled dials %v, want the black-holed %s", f.cancelled, v6)
				}
			}
		})
	}
}

// TestDialRaceClosesLateLoser: an attempt that connects after another has
// won is closed, not leaked.
func TestDialRaceClosesLateLoser(t *testing.T) {
	f := &fakeNet{behave: map[string]string{v6: "late", v4: "ok"}, release: make(chan struct{})}
	c, err := race(t, f, []string{v6, v4}, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	close(f.release) // the preferred address connects now, too late
	var loser net.Conn
	tstest.Eventually(t, "the late dial connected", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		loser = f.peers[v6]
		return loser != nil
	})
	// Reading the far end of a closed pipe ends with EOF.
	if _, err := loser.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("late loser's connection: read %v, want EOF (closed)", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peers[v4] == nil {
		t.Errorf("winner is not %s", v4)
	}
}

func TestInterleaveFamilies(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{v4, v6}, []string{v4, v6}},
		{[]string{"203.0.113.1:80", "198.51.100.7:80", "[2001:db8::7]:80"}, []string{"203.0.113.1:80", "[2001:db8::7]:80", "198.51.100.7:80"}},
		{[]string{"relay.example:443", "[2001:db8::7]:443", "198.51.100.7:443"}, []string{"relay.example:443", "198.51.100.7:443", "[2001:db8::7]:443"}},
		{[]string{"[2001:db8::1]:1", "[2001:db8::2]:1", "192.0.2.1:1", "192.0.2.2:1"}, []string{"[2001:db8::1]:1", "192.0.2.1:1", "[2001:db8::2]:1", "192.0.2.2:1"}},
	} {
		if got := InterleaveFamilies(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("InterleaveFamilies(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

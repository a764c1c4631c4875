package speedtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
	"weft/internal/netutil"
)

// Server serves speed tests. Its zero value refuses everyone: set Allow.
type Server struct {
	// Allow says whether a client address may test; the daemon allows
	// the tailnet addresses of the peers in its map, and no one else.
	// Nil allows no one.
	Allow func(netip.Addr) bool
	// Logger receives a line per test; nil discards them.
	Logger *slog.Logger

	mu   sync.Mutex
	busy bool // guarded by mu: one test at a time
}

// Serve accepts connections on ln until ctx ends or ln fails, and serves
// one test on each. It closes ln when ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := netutil.ServeConns(ctx, ln, s.serveConn); err != nil {
		return fmt.Errorf("speedtest: %w", err)
	}
	return nil
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// serveConn serves one test on c and closes it.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	remote := addrOf(c.RemoteAddr())
	if s.Allow == nil || !s.Allow(remote) {
		s.log().Info("speed test refused: not a tailnet peer", "from", remote)
		fmt.Fprintf(c, "err %s is not a peer in this tailnet\n", remote)
		return
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := readLine(br)
	if err != nil {
		return
	}
	req, err := ParseRequest(line)
	if err != nil {
		fmt.Fprintf(c, "err %v\n", err)
		return
	}
	s.mu.Lock()
	busy := s.busy
	s.busy = true
	s.mu.Unlock()
	if busy {
		fmt.Fprintf(c, "err another speed test is running on this node: try again in %v\n", MaxDuration)
		return
	}
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}
	// Deferred after c.Close, so it runs first: the client sees the end
	// of the test only once the next one may start.
	defer release()
	// The client's duration plus room for the last bytes in flight.
	c.SetDeadline(time.Now().Add(req.Duration + 10*time.Second))
	s.log().Info("speed test", "from", remote, "dir", req.Dir, "duration", req.Duration)
	switch req.Dir {
	case Up:
		start := time.Now()
		n, _ := io.Copy(io.Discard, io.LimitReader(br, MaxBytes))
		elapsed := time.Since(start)
		release()
		fmt.Fprintf(c, "ok %d %d\n", n, elapsed.Microseconds())
	case Down:
		if _, err := io.WriteString(c, "ok\n"); err != nil {
			return
		}
		sendFor(c, req.Duration)
	}
}

// sendFor writes to w for d or MaxBytes, whichever comes first.
func sendFor(w io.Writer, d time.Duration) int64 {
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(d)
	var n int64
	for n < MaxBytes && time.Now().Before(deadline) {
		m, err := w.Write(buf[:min(int64(len(buf)), MaxBytes-n)])
		n += int64(m)
		if err != nil {
			break
		}
	}
	return n
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

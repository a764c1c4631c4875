package speedtest

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		line    string
		want    Request
		wantErr string
	}{
		{"weft-speedtest 1 up 10000", Request{Up, 10 * time.Second}, ""},
		{"weft-speedtest 1 down 250", Request{Down, 250 * time.Millisecond}, ""},
		{"weft-speedtest 1 down 3600000", Request{Down, MaxDuration}, ""}, // bounded
		{"weft-speedtest 2 up 10", Request{}, "version 2 not supported"},
		{"weft-speedtest 1 sideways 10", Request{}, "unknown direction"},
		{"weft-speedtest 1 up -5", Request{}, "bad duration"},
		{"weft-speedtest 1 up 0", Request{}, "bad duration"},
		{"GET / HTTP/1.1", Request{}, "not a weft speed test"},
		{"", Request{}, "not a weft speed test"},
	}
	for _, tt := range tests {
		got, err := ParseRequest(tt.line)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.line, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
		if back, err := ParseRequest(strings.TrimSpace(got.encode())); err != nil || back != got {
			t.Errorf("%q does not survive encoding: %+v, %v", tt.line, back, err)
		}
	}
}

// FuzzParseRequest: any line either parses into a request within the
// bounds, which encodes back to itself, or is refused.
func FuzzParseRequest(f *testing.F) {
	f.Add("weft-speedtest 1 up 10000")
	f.Add("weft-speedtest 1 down 99999999999999999999")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseRequest(line)
		if err != nil {
			return
		}
		if r.Duration <= 0 || r.Duration > MaxDuration || (r.Dir != Up && r.Dir != Down) {
			t.Fatalf("%q parsed out of bounds: %+v", line, r)
		}
		if back, err := ParseRequest(strings.TrimSpace(r.encode())); err != nil || back != r {
			t.Fatalf("%q: %+v encodes to %+v, %v", line, r, back, err)
		}
	})
}

func serve(t *testing.T, allow func(netip.Addr) bool) (string, *Server) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Allow: allow}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), s
}

func TestRunBothDirections(t *testing.T) {
	addr, _ := serve(t, func(a netip.Addr) bool { return a.IsLoopback() })
	dial := (&net.Dialer{}).DialContext
	for _, dir := range []Direction{Up, Down} {
		t.Run(string(dir), func(t *testing.T) {
			start := time.Now()
			res, err := Run(context.Background(), dial, addr, Request{Dir: dir, Duration: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes <= 0 || res.Elapsed < 150*time.Millisecond || res.Mbps() <= 0 || res.Dir != dir {
				t.Errorf("result %+v (%.1f Mbit/s)", res, res.Mbps())
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("a 200 ms test took %v", took)
			}
		})
	}
}

func TestRunRefused(t *testing.T) {
	addr, _ := serve(t, func(netip.Addr) bool { return false })
	dial := (&net.Dialer{}).DialContext
	for _, dir := range []Direction{Up, Down} {
		_, err := Run(context.Background(), dial, addr, Request{Dir: dir, Duration: 5 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "is not a peer in this tailnet") {
			t.Errorf("%s from a stranger: %v", dir, err)
		}
	}
	// One test at a time.
	addr, s := serve(t, func(netip.Addr) bool { return true })
	s.mu.Lock()
	s.busy = true
	s.mu.Unlock()
	_, err := Run(context.Background(), dial, addr, Request{Dir: Down, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "another speed test is running") {
		t.Errorf("while busy: %v", err)
	}
}

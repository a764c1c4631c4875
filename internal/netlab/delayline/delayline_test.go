//go:build linux

package delayline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns two connected message sockets standing in for a packet
// socket (the end Run gets) and its interface (the end the test drives).
func pair(t *testing.T, name string) (line, wire *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	line = os.NewFile(uintptr(fds[0]), name+"-line")
	wire = os.NewFile(uintptr(fds[1]), name+"-wire")
	t.Cleanup(func() { wire.Close() })
	return line, wire
}

func TestRunHoldsAndKeepsOrder(t *testing.T) {
	const delay = 30 * time.Millisecond
	a, aw := pair(t, "a")
	b, bw := pair(t, "b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{A: a, B: b, Delay: delay}) }()

	for _, dir := range []struct {
		name     string
		from, to *os.File
	}{{"a to b", aw, bw}, {"b to a", bw, aw}} {
		t.Run(dir.name, func(t *testing.T) {
			const n = 50
			sent := time.Now()
			for i := range n {
				if _, err := dir.from.Write([]byte(fmt.Sprintf("frame %d", i))); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 100)
			dir.to.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := range n {
				m, err := dir.to.Read(buf)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if i == 0 {
					if waited := time.Since(sent); waited < delay {
						t.Errorf("first frame arrived after %v; want at least %v", waited, delay)
					}
				}
				if got, want := string(buf[:m]), fmt.Sprintf("frame %d", i); got != want {
					t.Fatalf("got %q; want %q (order lost)", got, want)
				}
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestRunDropsBeyondQueue(t *testing.T) {
	a, aw := pair(t, "a")
	b, bw := pair(t, "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{A: a, B: b, Delay: 200 * time.Millisecond, Queue: 4}) }()
	for i := range 20 {
		if _, err := aw.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 10)
	got := 0
	bw.SetReadDeadline(time.Now().Add(time.Second))
	for {
		if _, err := bw.Read(buf); err != nil {
			break
		}
		got++
	}
	// The writer may hold one frame while the queue holds four more.
	if got < 4 || got > 5 {
		t.Errorf("%d of 20 frames crossed a 4-frame queue; want 4 or 5", got)
	}
	cancel()
	<-done
}

func TestRunRejectsBadConfig(t *testing.T) {
	a, _ := pair(t, "a")
	b, _ := pair(t, "b")
	defer a.Close()
	defer b.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no sockets", Config{}},
		{"negative delay", Config{A: a, B: b, Delay: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Run(context.Background(), tc.cfg); err == nil {
				t.Error("want an error")
			}
		})
	}
}

func TestLoss(t *testing.T) {
	for _, pct := range []int{0, 20, 50} {
		lose := newLoss(pct)
		dropped := 0
		const n = 20000
		for range n {
			if lose() {
				dropped++
			}
		}
		// The binomial's standard deviation is under 0.4% of n here;
		// 3% either way cannot fail by chance.
		if got := dropped * 100 / n; got < pct-3 || got > pct+3 || (pct == 0 && dropped != 0) {
			t.Errorf("loss %d%%: dropped %d of %d frames", pct, dropped, n)
		}
	}
}

func TestIsARP(t *testing.T) {
	frame := func(ethertype ...byte) []byte { return append(make([]byte, 10+12), ethertype...) }
	if !isARP(frame(0x08, 0x06)) || isARP(frame(0x08, 0x00)) || isARP(frame(0x08)) {
		t.Error("isARP misreads the ethertype after the virtio-net header")
	}
}

// TestRunCounts: the counters Run logs when it stops say how many frames
// each direction read and how many LossPercent dropped, and they add up
// with what arrived.
func TestRunCounts(t *testing.T) {
	a, aw := pair(t, "a")
	b, bw := pair(t, "b")
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{A: a, B: b, LossPercent: 50, Logger: logger}) }()
	const n = 200
	for i := range n {
		if _, err := aw.Write([]byte(fmt.Sprintf("frame %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Frames arrive in order; the last one that survives the loss may be
	// any, so read until a quiet spell.
	got := 0
	buf := make([]byte, 100)
	for {
		bw.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := bw.Read(buf); err != nil {
			break
		}
		got++
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	want := fmt.Sprintf("dir=a->b final=true frames=%d lost=%d queue_full=0 write_dropped=0 kernel_drops=0", n, n-got)
	if !strings.Contains(out, want) {
		t.Fatalf("%d of %d frames arrived; the final counters do not say so (want %q):\n%s", got, n, want, out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestClassOf(t *testing.T) {
	frame := func(ethertype ...byte) []byte { return append(make([]byte, 10+12), ethertype...) }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  int
	}{
		{"IPv4", frame(0x08, 0x00), classIPv4},
		{"IPv6", frame(0x86, 0xdd), classIPv6},
		{"ARP", frame(0x08, 0x06), classOther},
		{"short", frame(0x86), classOther},
	} {
		if got := classOf(tc.frame); got != tc.want {
			t.Errorf("%s: class %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestRunExtraDelayByFamily: with IPv6 held longer than IPv4, an IPv4
// frame sent after IPv6 ones overtakes them, and each family keeps its
// own order.
func TestRunExtraDelayByFamily(t *testing.T) {
	a, aw := pair(t, "a")
	b, bw := pair(t, "b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{A: a, B: b, ExtraIPv6: 300 * time.Millisecond}) }()
	frame := func(hi, lo byte, tag string) []byte {
		return append(append(make([]byte, 10+12), hi, lo), tag...)
	}
	for _, f := range [][]byte{frame(0x86, 0xdd, "v6 one"), frame(0x86, 0xdd, "v6 two"), frame(0x08, 0x00, "v4")} {
		if _, err := aw.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	buf := make([]byte, 100)
	bw.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 3 {
		n, err := bw.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(buf[10+14:n]))
	}
	if want := []string{"v4", "v6 one", "v6 two"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("arrived %q, want %q", got, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

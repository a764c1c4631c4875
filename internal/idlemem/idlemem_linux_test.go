package idlemem

import (
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"weft/internal/tstest"
)

// pipeTUN is a TUN whose packets come from a pipe, one byte each: its
// file takes read deadlines, as wireguard-go's Linux TUN's does.
type pipeTUN struct {
	tun.Device // nil: only Read is called
	f          *os.File
}

func (p *pipeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := p.f.Read(bufs[0][offset : offset+1])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

// chanBind is a Bind with two receive functions fed by channels; wake
// makes each return an empty batch, as magicsock's wake-up datagram does.
type chanBind struct {
	conn.Bind // nil: only Open and Close are called
	in        [2]chan byte
	woken     [2]chan struct{}
}

func newChanBind() *chanBind {
	b := &chanBind{}
	for i := range 2 {
		b.in[i] = make(chan byte, 1024)
		b.woken[i] = make(chan struct{}, 1)
	}
	return b
}

func (b *chanBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	var fns []conn.ReceiveFunc
	for i := range 2 {
		fns = append(fns, func(bufs [][]byte, sizes []int, _ []conn.Endpoint) (int, error) {
			select {
			case c, ok := <-b.in[i]:
				if !ok {
					return 0, net.ErrClosed
				}
				bufs[0][0] = c
				sizes[0] = 1
				return 1, nil
			case <-b.woken[i]:
				return 0, nil
			}
		})
	}
	return fns, 1, nil
}

func (b *chanBind) Close() error { return nil }

// stop ends the receive functions.
func (b *chanBind) stop() {
	for i := range 2 {
		close(b.in[i])
	}
}

func (b *chanBind) wake() {
	for i := range 2 {
		select {
		case b.woken[i] <- struct{}{}:
		default:
		}
	}
}

// fakeCollector records what the Releaser asks of the collector.
type fakeCollector struct {
	mu      sync.Mutex
	percent int
	set     []int // every SetGCPercent
	frees   int
	freedAt time.Time // the last Free
}

func (c *fakeCollector) Free() {
	c.mu.Lock()
	c.frees++
	c.freedAt = time.Now()
	c.mu.Unlock()
}

func (c *fakeCollector) SetGCPercent(p int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.percent
	c.percent = p
	c.set = append(c.set, p)
	return prev
}

func (c *fakeCollector) state() (percent int, set []int, frees int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.percent, append([]int(nil), c.set...), c.frees
}

// testReader plays one of wireguard-go's readers: a batch of 64 KiB
// buffers, each replaced by a fresh (touched) one when its packet is
// handed on, reading until an error, which it reports.
type testReader struct {
	mu   sync.Mutex
	bufs [][]byte
	got  []byte
	last time.Time // when the last packet was read
	err  error
}

func newTestReader(batch int) *testReader {
	r := &testReader{bufs: make([][]byte, batch)}
	for i := range r.bufs {
		r.bufs[i] = touched()
	}
	return r
}

func touched() []byte {
	b := make([]byte, 64<<10)
	b[0] = 0xAA
	for n := 1; n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
	return b
}

func (r *testReader) run(read func(bufs [][]byte, sizes []int) (int, error)) {
	sizes := make([]int, len(r.bufs))
	r.mu.Lock()
	bufs := append([][]byte(nil), r.bufs...)
	r.mu.Unlock()
	for {
		n, err := read(bufs, sizes)
		r.mu.Lock()
		if err != nil {
			r.err = err
			r.mu.Unlock()
			return
		}
		for i := range n {
			if sizes[i] > 0 {
				r.got = append(r.got, bufs[i][0])
				r.last = time.Now()
				bufs[i] = touched()
			}
		}
		r.bufs = append(r.bufs[:0], bufs...)
		r.mu.Unlock()
	}
}

func (r *testReader) state() (got []byte, err error, bufs [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.got...), r.err, append([][]byte(nil), r.bufs...)
}

func (r *testReader) lastRead() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// TestReleaseAfterABurst drives a burst through a TUN reader and two
// socket readers, then lets the traffic stop: once, and only once, every
// reader must give its batch's pages back, the collector must free the
// heap and run at the idle GOGC, no read may see an error the release
// caused, and the readers must read correctly afterwards.
func TestReleaseAfterABurst(t *testing.T) {
	const (
		quiet = 150 * time.Millisecond
		burst = 300
		batch = 4
	)
	col := &fakeCollector{percent: 100}
	r := New(Options{Quiet: quiet, Burst: burst / 2, Trickle: 5, Collector: col})
	defer r.Close()
	if p, _, _ := col.state(); p != DefaultIdleGCPercent {
		t.Fatalf("GOGC %d when the data plane starts idle, want %d", p, DefaultIdleGCPercent)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	dev := r.TUN(&pipeTUN{f: pr}, pr)
	bind := newChanBind()
	defer bind.stop()
	fns, _, err := r.Bind(bind, bind.wake).Open(0)
	if err != nil {
		t.Fatal(err)
	}
	readers := []*testReader{newTestReader(batch), newTestReader(batch), newTestReader(batch)}
	go readers[0].run(func(bufs [][]byte, sizes []int) (int, error) { return dev.Read(bufs, sizes, 0) })
	for i, fn := range fns {
		eps := make([]conn.Endpoint, batch)
		go readers[1+i].run(func(bufs [][]byte, sizes []int) (int, error) { return fn(bufs, sizes, eps) })
	}

	send := func(b byte) {
		t.Helper()
		if _, err := pw.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		bind.in[0] <- b
		bind.in[1] <- b
	}
	// A reader starved for a Quiet spell mid-burst (a loaded machine)
	// looks like the end of the burst: the release then comes before
	// its last packets, which touch buffers again. Burst again until a
	// release comes after every reader's last packet.
	sent, clean := 0, false
	for try := 1; try <= 3 && !clean; try++ {
		for i := range burst / 3 {
			send(byte(i))
		}
		sent += burst / 3
		tstest.Eventually(t, "the release after the burst", func() bool { return r.Stats().Releases == uint64(try) })
		tstest.Eventually(t, "the readers reading the whole burst", func() bool {
			for _, rd := range readers {
				if got, _, _ := rd.state(); len(got) != sent {
					return false
				}
			}
			return true
		})
		col.mu.Lock()
		freedAt := col.freedAt
		col.mu.Unlock()
		clean = true
		for _, rd := range readers {
			clean = clean && rd.lastRead().Before(freedAt)
		}
	}
	if !clean {
		t.Fatal("in three bursts no release came after the readers' last packets: the machine starves the readers for more than a Quiet spell")
	}
	percent, set, frees := col.state()
	if percent != DefaultIdleGCPercent || frees != int(r.Stats().Releases) {
		t.Errorf("after the release: %d frees for %d releases, GOGC %d; want GOGC %d", frees, r.Stats().Releases, percent, DefaultIdleGCPercent)
	}
	if want := []int{DefaultIdleGCPercent, 100, DefaultIdleGCPercent}; !slices.Equal(set[:3], want) {
		t.Errorf("GOGC set to %v, want %v (idle, the burst's, idle) and so on", set, want)
	}
	if got, want := r.Stats().Buffers, 3*batch*r.Stats().Releases; got != want {
		t.Errorf("%d buffers given back, want the readers' %d", got, want)
	}
	for i, rd := range readers {
		_, err, bufs := rd.state()
		if err != nil {
			t.Fatalf("reader %d stopped with %v", i, err)
		}
		for j, b := range bufs {
			for k, res := range resident(t, b) {
				if res {
					t.Fatalf("reader %d's buffer %d: page %d still resident after the release", i, j, k)
				}
			}
		}
	}

	// Quiet goes on: no further release without a new burst.
	releases := r.Stats().Releases
	time.Sleep(5 * quiet)
	if n := r.Stats().Releases; n != releases {
		t.Errorf("%d releases with no traffic after the %dth, want none", n-releases, releases)
	}
	// The readers work as before, with what they read intact.
	send(0xEE)
	tstest.Eventually(t, "the packet after the release", func() bool {
		for _, rd := range readers {
			got, _, _ := rd.state()
			if len(got) != sent+1 || got[len(got)-1] != 0xEE {
				return false
			}
		}
		return true
	})
	for i, rd := range readers {
		if _, err, _ := rd.state(); err != nil {
			t.Errorf("reader %d saw %v", i, err)
		}
	}
	// A second burst is released again.
	for i := range burst / 3 {
		send(byte(i))
	}
	tstest.Eventually(t, "the release after the next burst", func() bool { return r.Stats().Releases == releases+1 })
}

// TestBusyTrafficDefersTheRelease: while packets keep coming faster than
// the trickle, the release waits; when they stop, it comes.
func TestBusyTrafficDefersTheRelease(t *testing.T) {
	const quiet = 40 * time.Millisecond
	r := New(Options{Quiet: quiet, Burst: 10, Trickle: 3})
	defer r.Close()
	bind := newChanBind()
	defer bind.stop()
	fns, _, err := r.Bind(bind, bind.wake).Open(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range fns {
		rd := newTestReader(2)
		eps := make([]conn.Endpoint, 2)
		go rd.run(func(bufs [][]byte, sizes []int) (int, error) { return fn(bufs, sizes, eps) })
	}
	end := time.Now().Add(8 * quiet)
	for time.Now().Before(end) {
		bind.in[0] <- 1
		time.Sleep(quiet / 20)
	}
	if n := r.Stats().Releases; n != 0 {
		t.Fatalf("%d releases while packets kept coming", n)
	}
	tstest.Eventually(t, "the release once the traffic stopped", func() bool { return r.Stats().Releases == 1 })
}

func TestCloseRestoresGOGC(t *testing.T) {
	col := &fakeCollector{percent: 80}
	r := New(Options{Collector: col})
	r.Close()
	if p, _, _ := col.state(); p != 80 {
		t.Errorf("GOGC after Close = %d, want the process's 80", p)
	}
	col = &fakeCollector{percent: 2}
	New(Options{Collector: col}).Close()
	if p, set, _ := col.state(); p != 2 {
		t.Errorf("a GOGC lower than the idle one was changed to %d (set %v)", p, set)
	}
}

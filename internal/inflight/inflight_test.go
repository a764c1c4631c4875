package inflight

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// pool hands out distinct buffers, as wireguard-go's message pool does.
type pool struct {
	mu   sync.Mutex
	free [][]byte
}

func (p *pool) get() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	return make([]byte, 64)
}

func (p *pool) put(b []byte) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}

// reader is one of the device's readers: a batch of buffers, each
// replaced from the pool when its packet goes on.
type reader struct {
	bufs  [][]byte
	sizes []int
	rd    *Reader // made by the first read, for its Bound and direction
}

func newReader(p *pool, batch int) *reader {
	r := &reader{bufs: make([][]byte, batch), sizes: make([]int, batch)}
	for i := range r.bufs {
		r.bufs[i] = p.get()
	}
	return r
}

// read reads n packets of dir under b and returns them, replacing their
// buffers from p, as the device does with what it consumes.
func (r *reader) read(b *Bound, p *pool, dir Dir, n int) [][]byte {
	if r.rd == nil {
		r.rd = b.Reader(dir)
	}
	r.rd.Admit(r.bufs)
	for i := range n {
		r.sizes[i] = 40
		r.bufs[i][0] = 4 // a WireGuard data packet's type
	}
	r.rd.Read(r.bufs, r.sizes, n, 0, nil)
	out := make([][]byte, n)
	for i := range n {
		out[i] = r.bufs[i]
		r.bufs[i] = p.get()
	}
	return out
}

func TestBoundHonouredUnderConcurrentProducers(t *testing.T) {
	const (
		maxInFlight = 32
		batch       = 8
		readers     = 4
		reads       = 300
	)
	for _, dir := range []Dir{Out, In} {
		t.Run(dir.String(), func(t *testing.T) {
			b := New(Options{Max: maxInFlight, StallAfter: time.Hour})
			p := &pool{}
			queue := make(chan []byte, readers*reads*batch)
			var over atomic.Int64
			var wg sync.WaitGroup
			for range readers {
				r := newReader(p, batch)
				wg.Go(func() {
					for range reads {
						for _, pkt := range r.read(b, p, dir, 1+rand.IntN(batch)) {
							queue <- pkt
						}
						if n := b.Stats().InFlight[dir]; n > maxInFlight+readers*batch {
							over.Store(int64(n))
						}
					}
				})
			}
			// The consumer hands packets on slower than they come, in
			// batches, then returns their buffers to the pool.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for got := 0; ; {
					var out [][]byte
					for len(out) < batch {
						pkt, ok := <-queue
						if !ok {
							break
						}
						out = append(out, pkt)
					}
					if len(out) == 0 {
						return
					}
					time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
					b.Done(out)
					for _, pkt := range out {
						p.put(pkt)
					}
					got += len(out)
				}
			}()
			wg.Wait()
			close(queue)
			<-done
			st := b.Stats()
			if n := over.Load(); n != 0 {
				t.Errorf("a direction held %d packets, bound is %d + %d readers × %d", n, maxInFlight, readers, batch)
			}
			if st.Peak[dir] > maxInFlight+readers*batch {
				t.Errorf("peak %d, bound is %d + %d readers × %d", st.Peak[dir], maxInFlight, readers, batch)
			}
			if st.Peak[dir] < maxInFlight {
				t.Errorf("peak %d: the producers never reached the bound %d, so the test shows nothing", st.Peak[dir], maxInFlight)
			}
			if st.Waits[dir] == 0 {
				t.Error("no reader ever waited: no back-pressure happened")
			}
			if st.InFlight != [2]int{} || b.held.n != 0 {
				t.Errorf("after everything was handed on: in flight %v, %d buffers held", st.InFlight, b.held.n)
			}
		})
	}
}

func TestBufferBackInAReaderIsNotInFlight(t *testing.T) {
	b := New(Options{Max: 4})
	p := &pool{}
	r := newReader(p, 4)
	pkts := r.read(b, p, Out, 3)
	if got := b.Stats().InFlight[Out]; got != 3 {
		t.Fatalf("in flight %d after reading 3", got)
	}
	// The device drops one packet (never handed on) and its buffer
	// comes back to the reader through the pool.
	r.bufs[0] = pkts[0]
	r.rd.Admit(r.bufs)
	if got := b.Stats().InFlight[Out]; got != 2 {
		t.Fatalf("in flight %d after a dropped packet's buffer came back to a reader, want 2", got)
	}
	// A packet the reader read but did not consume (no peer for it)
	// stays in its buffer: the next read takes it out of flight.
	r2 := newReader(p, 4)
	rd2 := b.Reader(In)
	rd2.Admit(r2.bufs)
	r2.sizes[0] = 40
	rd2.Read(r2.bufs, r2.sizes, 1, 0, nil)
	rd2.Admit(r2.bufs)
	if got := b.Stats().InFlight[In]; got != 0 {
		t.Fatalf("in flight %d after the unconsumed packet's reader read again, want 0", got)
	}
	b.Done(pkts[1:])
	if st := b.Stats(); st.InFlight != [2]int{} {
		t.Fatalf("in flight %v after everything was handed on", st.InFlight)
	}
}

func TestCountsFiltersWhatIsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"data", append([]byte{4, 0, 0, 0}, make([]byte, 60)...), true},
		{"keepalive", append([]byte{4, 0, 0, 0}, make([]byte, 28)...), false},
		{"handshake initiation", append([]byte{1, 0, 0, 0}, make([]byte, 144)...), false},
		{"short", []byte{4, 0}, false},
		{"type 4 with high bytes set", append([]byte{4, 1, 0, 0}, make([]byte, 60)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isTransportData(tc.pkt); got != tc.want {
				t.Errorf("isTransportData = %v, want %v", got, tc.want)
			}
			b := New(Options{})
			buf := make([]byte, 256)
			copy(buf, tc.pkt)
			b.Reader(In).Read([][]byte{buf}, []int{len(tc.pkt)}, 1, 0, isTransportData)
			if got := b.Stats().InFlight[In] == 1; got != tc.want {
				t.Errorf("counted = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestStallForgetsDroppedPackets: packets the device dropped whose
// buffers no reader sees again would hold the bound for ever; after a
// reader waited StallAfter with nothing handed on, they are forgotten.
func TestStallForgetsDroppedPackets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Options{Max: 4, StallAfter: time.Second})
		p := &pool{}
		r := newReader(p, 4)
		r.read(b, p, Out, 4) // all four dropped inside the device
		passed := make(chan struct{})
		go func() {
			r.rd.Admit(r.bufs)
			close(passed)
		}()
		synctest.Wait()
		select {
		case <-passed:
			t.Fatal("a reader went on with the direction full")
		default:
		}
		time.Sleep(time.Second)
		synctest.Wait()
		select {
		case <-passed:
		default:
			t.Fatal("the reader still waits after StallAfter with nothing handed on")
		}
		st := b.Stats()
		if st.Forgotten[Out] != 4 || st.InFlight[Out] != 0 || st.Waits[Out] != 1 {
			t.Errorf("stats %+v, want 4 forgotten, none in flight, one wait", st)
		}
	})
}

// TestCloseReleasesWaitersAndHoldsNothing: after Close no reader waits,
// nothing is held, and the goroutines that waited are gone.
func TestCloseReleasesWaitersAndHoldsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Options{Max: 2, StallAfter: time.Hour})
		p := &pool{}
		r := newReader(p, 2)
		r.read(b, p, In, 2)
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { b.Reader(In).Admit(newReader(p, 2).bufs) })
		}
		synctest.Wait() // all three wait
		b.Close()
		wg.Wait()
		if st := b.Stats(); st.InFlight != [2]int{} || b.held.n != 0 {
			t.Errorf("after Close: in flight %v, %d buffers held", st.InFlight, b.held.n)
		}
		// Reads after Close are not counted and never wait.
		r.read(b, p, In, 2)
		r.read(b, p, In, 2)
		if st := b.Stats(); st.InFlight != [2]int{} {
			t.Errorf("reads after Close counted: %v", st.InFlight)
		}
	})
}

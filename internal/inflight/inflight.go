// Package inflight bounds the packets wireguard-go's device holds between
// the seams weft owns: from the TUN read to the socket send (Out), and
// from the socket read to the TUN write (In).
//
// wireguard-go keeps every packet in a pooled 64 KiB buffer and, on
// Linux, puts no limit on its pools: its queues hold up to 1,024 batches
// of up to 128 packets each, so a fast sender can make the device hold
// hundreds of MB (docs/benchmarks.md, "Memory under load"). A Bound makes
// the device's readers wait while a direction holds its Max, so the
// buffers in use stay bounded whatever the traffic: the waiting is
// back-pressure on the TUN (the kernel's queue then drops, and TCP slows
// down) and on the UDP socket (whose receive buffer then drops).
//
// Packets are recognised by their buffer: the address of its first byte,
// which is the same when wireguard-go reads into it and when it hands the
// packet on. A buffer that comes back into a reader's hands is no longer
// in flight, whether it was handed on or dropped inside the device. A
// packet the device dropped and whose buffer no reader has seen again
// still counts until a reader has waited StallAfter with nothing handed
// on; then the packets read longer than StallAfter ago are forgotten (and
// counted in Stats.Forgotten): the device no longer holds them, or holds
// them only in its own bounded handshake queue.
//
// The bound: a reader reads only while its direction holds fewer than Max
// packets, and a read adds at most one batch, so a direction never holds
// more than Max plus one batch per reader.
//
// The cost: each batch takes one mutex three times (the read, the
// hand-on, the next read's admission), and each packet takes three probes
// of a small hash table; a Reader looks at the positions of its batch it
// read into last, not at the whole batch (BenchmarkBoundCost).
package inflight

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Dir is a packet's direction through the device.
type Dir uint8

const (
	// Out is TUN → socket: read from the TUN, sealed, sent.
	Out Dir = iota
	// In is socket → TUN: received, opened, written to the TUN.
	In
)

func (d Dir) String() string {
	if d == Out {
		return "out"
	}
	return "in"
}

// Defaults for Options.
const (
	// DefaultMax is the packets a direction may hold before its
	// readers wait: half of one of wireguard-go's Linux batches, more
	// than one TUN read (a 64 KiB segmentation-offload packet is about
	// 46 packets at MTU 1420), so a read goes on while the one before
	// is sealed and sent. A direction then holds at most DefaultMax
	// plus one batch per reader. With a whole batch (128) the buffers
	// in flight, on top of the readers' own batches, filled the
	// daemon's default memory limit under load, and the collector ran
	// 6-16 times a second for 10-16 % of the daemons' CPU
	// (docs/benchmarks.md, "Data plane side by side").
	DefaultMax = 64
	// DefaultStallAfter is how long a reader waits, with nothing handed
	// on, before packets read longer ago count as dropped.
	DefaultStallAfter = 250 * time.Millisecond
)

// Options configure a Bound; zero fields take the defaults.
type Options struct {
	// Max is how many packets a direction may hold before its readers
	// wait.
	Max int
	// StallAfter: see the package comment.
	StallAfter time.Duration
}

// Stats are a Bound's counters.
type Stats struct {
	// Max is the bound's Max.
	Max int `json:"max"`
	// InFlight are the packets each direction holds now, Peak the most
	// it held, by direction (Out, In).
	InFlight [2]int `json:"in_flight"`
	Peak     [2]int `json:"peak"`
	// Waits counts the reads that had to wait for room (back-pressure).
	Waits [2]uint64 `json:"waits"`
	// Forgotten counts packets taken as dropped inside the device after
	// a stall.
	Forgotten [2]uint64 `json:"forgotten"`
}

// Bound counts the packets in flight in each direction and makes readers
// wait while a direction holds its Max. Its methods, and its Readers',
// are safe for concurrent use; make one with New.
type Bound struct {
	max        int
	stallAfter time.Duration
	epoch      time.Time // entry.at counts from here

	waits     [2]atomic.Uint64
	forgotten [2]atomic.Uint64

	mu     sync.Mutex // guards the fields below
	held   table
	n      [2]int
	peak   [2]int
	last   [2]time.Time  // when a packet of the direction was last handed on
	wake   chan struct{} // closed when a waiter may go on; nil without waiters
	closed bool
}

// entry is a packet in flight: its direction and when it was read
// (nanoseconds since the Bound's epoch).
type entry struct {
	dir Dir
	at  int64
}

// New makes a Bound.
func New(o Options) *Bound {
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.StallAfter <= 0 {
		o.StallAfter = DefaultStallAfter
	}
	return &Bound{max: o.Max, stallAfter: o.StallAfter, epoch: time.Now(), held: newTable(2 * o.Max)}
}

// addr identifies a packet by its buffer's first byte.
func addr(b []byte) uintptr {
	if cap(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}

// Reader is one of the device's readers of a direction (the TUN's, or
// one socket receive function): Admit before each read, Read after it.
// It remembers how many of its batch's positions its last read filled:
// wireguard-go replaces the buffers of the packets it takes and leaves
// the rest of the batch as it was, so only those positions can hold a
// buffer that is in flight or that came back from flight, and Admit looks
// at those alone. A Reader is used by one goroutine at a time.
type Reader struct {
	b    *Bound
	dir  Dir
	used int // positions the last Read filled; -1 before the first
}

// Reader makes a Reader of direction dir.
func (b *Bound) Reader(dir Dir) *Reader { return &Reader{b: b, dir: dir, used: -1} }

// Admit is called before the reader reads into bufs. The buffers bufs
// holds are the reader's, so none of them is in flight any longer; then
// Admit waits while the direction holds Max packets or more. It returns
// at once after Close.
func (r *Reader) Admit(bufs [][]byte) {
	look := bufs
	if r.used >= 0 && r.used < len(bufs) {
		look = bufs[:r.used]
	}
	r.b.admit(r.dir, look)
}

// Read records what the reader read: of bufs[:n], the packets whose size
// is not zero and which counts accepts (nil accepts all) are in flight
// from now on. offset is where the reader's packets start in their
// buffers.
func (r *Reader) Read(bufs [][]byte, sizes []int, n, offset int, counts func(pkt []byte) bool) {
	r.used = n
	r.b.read(r.dir, bufs, sizes, n, offset, counts)
}

func (b *Bound) admit(dir Dir, bufs [][]byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, buf := range bufs {
		if e, ok := b.held.take(addr(buf)); ok {
			b.n[e.dir]--
		}
	}
	if b.n[dir] < b.max || b.closed {
		return
	}
	b.waits[dir].Add(1)
	for b.n[dir] >= b.max && !b.closed {
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.mu.Unlock()
		t := time.NewTimer(b.stallAfter)
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
		b.mu.Lock()
		now := time.Now()
		if now.Sub(b.last[dir]) >= b.stallAfter {
			b.forgetLocked(dir, now.Add(-b.stallAfter))
		}
	}
}

func (b *Bound) read(dir Dir, bufs [][]byte, sizes []int, n, offset int, counts func(pkt []byte) bool) {
	at := int64(time.Since(b.epoch))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for i := range n {
		if sizes[i] <= 0 || offset+sizes[i] > len(bufs[i]) {
			continue
		}
		if counts != nil && !counts(bufs[i][offset:offset+sizes[i]]) {
			continue
		}
		if old, was := b.held.put(addr(bufs[i]), entry{dir: dir, at: at}); was {
			b.n[old.dir]--
		}
		b.n[dir]++
	}
	b.peak[dir] = max(b.peak[dir], b.n[dir])
}

// Done is called with packets the device hands on (to a socket or the
// TUN): they are no longer in flight. Buffers that are not in flight
// (keepalives, handshakes, disco) are ignored.
func (b *Bound) Done(bufs [][]byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var now time.Time
	for _, buf := range bufs {
		e, ok := b.held.take(addr(buf))
		if !ok {
			continue
		}
		b.n[e.dir]--
		if now.IsZero() {
			now = time.Now()
		}
		b.last[e.dir] = now
	}
	b.wakeLocked()
}

// forgetLocked takes dir's packets read at or before cutoff as dropped.
func (b *Bound) forgetLocked(dir Dir, cutoff time.Time) {
	at := int64(cutoff.Sub(b.epoch))
	n := b.held.drop(func(e entry) bool { return e.dir == dir && e.at <= at })
	b.n[dir] -= n
	b.forgotten[dir].Add(uint64(n))
}

// wakeLocked lets waiters look again.
func (b *Bound) wakeLocked() {
	if b.wake != nil && (b.n[Out] < b.max || b.n[In] < b.max || b.closed) {
		close(b.wake)
		b.wake = nil
	}
}

// Close lets every waiting reader go and stops counting: after Close, the
// Bound holds nothing and makes no reader wait.
func (b *Bound) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.held.clear()
	b.n = [2]int{}
	b.wakeLocked()
}

// Stats returns the counters.
func (b *Bound) Stats() Stats {
	b.mu.Lock()
	s := Stats{Max: b.max, InFlight: b.n, Peak: b.peak}
	b.mu.Unlock()
	for d := range 2 {
		s.Waits[d] = b.waits[d].Load()
		s.Forgotten[d] = b.forgotten[d].Load()
	}
	return s
}

// Package idlemem gives back the memory the data plane touched under load
// once the traffic stops (docs/benchmarks.md, "Memory under load").
//
// wireguard-go's readers (the TUN's and each socket's) hold a batch of
// 128 packet buffers of 64 KiB each at all times. When the daemon starts,
// those pages were never touched and cost no resident memory. Under load
// every buffer a reader hands on is replaced from the device's pool, and
// a buffer the allocator hands out again is zeroed, which touches all of
// its pages: after a burst the readers hold up to 8 MiB each of resident
// memory that is live (the runtime cannot give it back) and idle. The
// pool keeps the freed buffers through one collection too.
//
// A Releaser watches the packets the readers see. Once a burst (at least
// Options.Burst packets) is followed by a quiet spell (fewer than
// Options.Trickle packets in Options.Quiet), it asks every reader for its
// batch: each reader's wrapper, between two reads, when the buffers are
// its own, tells the kernel it no longer needs their pages (on Linux
// madvise MADV_DONTNEED: they read as zeros and take memory again only
// when written). Then, with a Collector, it collects twice, so that the
// pool's buffers go, and returns the free heap to the system. That
// happens once per burst: while the data plane is idle no timer runs, and
// the next burst arms it again.
//
// While idle, the Collector also runs the collector more often
// (Options.IdleGCPercent): the daemon's live heap is mostly the readers'
// untouched batches (32 MiB), so at the default GOGC the heap would grow
// by several MB of touched garbage before each collection, which an idle
// daemon would keep resident. Under load the process's own setting (and
// its memory limit) applies.
//
// A reader blocked in a read has to be woken for that: the TUN's by a read
// deadline on its file (the wrapper swallows the timeout, which must never
// reach wireguard-go: it closes the device on a TUN read error), a
// socket's by its Bind (magicsock sends a datagram to its own sockets and
// returns an empty batch for it). A reader that cannot be woken keeps its
// batch; the release goes on without it after WakeTimeout.
package idlemem

import (
	"cmp"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	// DefaultQuiet is how long the traffic must stay (nearly) stopped
	// before the release: the release comes 1-2 Quiet spells after the
	// last burst, within the 15 s the docs promise.
	DefaultQuiet = 5 * time.Second
	// DefaultBurst is how many packets make a burst worth releasing
	// after: 32 of the readers' batches, about 6 MB at full size.
	DefaultBurst = 4096
	// DefaultTrickle is the most packets a Quiet spell may carry and
	// still count as quiet: keepalives and an idle SSH session stay
	// below it.
	DefaultTrickle = 256
	// WakeTimeout is how long a release waits for the readers it woke.
	WakeTimeout = time.Second
)

// Options configure a Releaser; zero fields take the defaults.
type Options struct {
	Quiet   time.Duration
	Burst   uint64
	Trickle uint64
	// IdleGCPercent is GOGC while the data plane is idle (default 5).
	IdleGCPercent int
	// Logger gets one debug line per release. If nil, nothing is
	// logged.
	Logger *slog.Logger
	// Collector is the garbage collector the Releaser drives. If nil,
	// it gives back the readers' pages only and leaves the collector
	// alone (tests, and processes that run several data planes).
	Collector Collector
}

// Collector is the process's garbage collector as the Releaser drives it.
type Collector interface {
	// Free collects the garbage, including what pools hold, and
	// returns the free heap to the system.
	Free()
	// SetGCPercent sets GOGC and returns the previous setting, as
	// runtime/debug.SetGCPercent does.
	SetGCPercent(percent int) int
}

// Runtime is the Go runtime's collector.
type Runtime struct{}

// Free collects twice (a sync.Pool, as wireguard-go's pools are, keeps
// what it holds through one collection) and returns the free heap to the
// system.
func (Runtime) Free() {
	runtime.GC()
	debug.FreeOSMemory()
}

// SetGCPercent is runtime/debug.SetGCPercent.
func (Runtime) SetGCPercent(percent int) int { return debug.SetGCPercent(percent) }

// DefaultIdleGCPercent is Options.IdleGCPercent's default: with the
// readers' batches the idle heap is about 40 MB, so a collection comes
// after about 2 MB of garbage (every 20 s or so for an idle daemon).
const DefaultIdleGCPercent = 5

// Stats are a Releaser's counters.
type Stats struct {
	// Releases counts the releases after a burst.
	Releases uint64
	// Buffers counts the readers' buffers whose pages were given back,
	// over all releases.
	Buffers uint64
}

// Releaser watches the data plane's readers and gives their memory back
// after a burst. Make one with New, wrap the device's TUN with TUN and its
// Bind with Bind, and Close it when the device closes.
type Releaser struct {
	opts Options

	packets  atomic.Uint64 // packets the readers saw since the last release
	armed    atomic.Bool   // a timer runs (a burst is being watched)
	releases atomic.Uint64
	buffers  atomic.Uint64

	mu      sync.Mutex // guards the fields below
	timer   *time.Timer
	seen    uint64             // packets at the timer's last check
	readers map[*reader]func() // each wakeable reader and what wakes it
	closed  bool

	// busyGC is GOGC under load, restored when a burst starts; -1: the
	// Releaser leaves GOGC alone.
	busyGC int
}

// New makes a Releaser.
func New(o Options) *Releaser {
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	o.Burst = cmp.Or(o.Burst, DefaultBurst)
	o.Trickle = cmp.Or(o.Trickle, DefaultTrickle)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.IdleGCPercent <= 0 {
		o.IdleGCPercent = DefaultIdleGCPercent
	}
	r := &Releaser{opts: o, readers: map[*reader]func(){}, busyGC: -1}
	if c := o.Collector; c != nil {
		// The process's own GOGC is what a burst gets; an idle data
		// plane collects more often unless that is already lower
		// (or the collector is off).
		if prev := c.SetGCPercent(o.IdleGCPercent); prev > o.IdleGCPercent {
			r.busyGC = prev
		} else {
			c.SetGCPercent(prev)
		}
	}
	return r
}

// saw is called by a reader with the packets a read gave it. It costs an
// atomic add per batch; the first batch of a burst starts the timer.
func (r *Releaser) saw(n int) {
	if n <= 0 {
		return
	}
	if r.packets.Add(uint64(n)) >= r.opts.Burst && !r.armed.Load() && r.armed.CompareAndSwap(false, true) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closed {
			return
		}
		r.seen = r.packets.Load()
		r.timer = time.AfterFunc(r.opts.Quiet, r.check)
		if r.busyGC >= 0 {
			r.opts.Collector.SetGCPercent(r.busyGC)
		}
	}
}

// check runs Quiet after the timer was set: while packets still come it
// looks again a Quiet later, and once they stopped it releases.
func (r *Releaser) check() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	now := r.packets.Load()
	if now-r.seen >= r.opts.Trickle {
		r.seen = now
		r.timer.Reset(r.opts.Quiet)
		r.mu.Unlock()
		return
	}
	r.timer = nil
	r.mu.Unlock()
	r.release()
	r.packets.Store(0)
	r.armed.Store(false)
}

// release asks every reader for its batch, waits for them (at most
// WakeTimeout) and frees the heap.
func (r *Releaser) release() {
	r.mu.Lock()
	var woken []*reader
	var wakes []func()
	seen := map[any]bool{}
	for rd, wake := range r.readers {
		select {
		case <-rd.released: // a count the last release gave up on
		default:
		}
		rd.want.Store(true)
		woken = append(woken, rd)
		// Readers of one Bind share its wake: call it once.
		if key := rd.wakeKey; !seen[key] {
			seen[key] = true
			wakes = append(wakes, wake)
		}
	}
	r.mu.Unlock()
	for _, wake := range wakes {
		wake()
	}
	deadline := time.NewTimer(WakeTimeout)
	defer deadline.Stop()
	gave := 0
wait:
	for _, rd := range woken {
		select {
		case n := <-rd.released:
			gave += n
		case <-deadline.C:
			break wait
		}
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if c := r.opts.Collector; c != nil && !closed {
		if r.busyGC >= 0 {
			c.SetGCPercent(r.opts.IdleGCPercent)
		}
		c.Free()
	}
	r.releases.Add(1)
	r.buffers.Add(uint64(gave))
	r.opts.Logger.Debug("gave the data plane's idle memory back", "readers", len(woken), "buffers", gave)
}

// Stats returns the counters.
func (r *Releaser) Stats() Stats {
	return Stats{Releases: r.releases.Load(), Buffers: r.buffers.Load()}
}

// Close stops the timer and gives GOGC back its setting under load; the
// wrappers keep working and release nothing more.
func (r *Releaser) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.busyGC >= 0 {
		r.opts.Collector.SetGCPercent(r.busyGC)
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	clear(r.readers)
}

// reader is one of the device's readers, as its wrapper sees it.
type reader struct {
	// want is set by a release and taken by the reader when it gives
	// its batch back.
	want atomic.Bool
	// released gets the number of buffers given back, once per want.
	released chan int
	// wakeKey groups the readers one wake function wakes.
	wakeKey any
}

func newReader(key any) *reader { return &reader{released: make(chan int, 1), wakeKey: key} }

// add registers rd, woken by wake.
func (r *Releaser) add(rd *reader, wake func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.readers[rd] = wake
	}
}

// remove forgets readers (a Bind's, when it closes or opens again).
func (r *Releaser) remove(rds ...*reader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rd := range rds {
		delete(r.readers, rd)
	}
}

// between is called by a reader's wrapper between two reads, when bufs are
// the reader's own: if a release asked for them, their pages go back.
func (rd *reader) between(bufs [][]byte) {
	if !rd.want.Load() || !rd.want.CompareAndSwap(true, false) {
		return
	}
	n := releasePages(bufs)
	select {
	case rd.released <- n:
	default:
	}
}

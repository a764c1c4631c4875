package idlemem

import (
	"errors"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// DeadlineFile is the part of a TUN's file the wrapper needs to wake its
// reader: *os.File when the descriptor is non-blocking (wireguard-go's
// Linux TUN).
type DeadlineFile interface {
	SetReadDeadline(t time.Time) error
}

// TUN wraps the device wireguard-go reads packets from. file, if not nil,
// is the device's file: a release wakes a blocked read by setting a read
// deadline on it. Without file (or when the file takes no deadlines) the
// TUN's reader is only counted, and its batch is not given back.
func (r *Releaser) TUN(dev tun.Device, file DeadlineFile) tun.Device {
	t := &idleTUN{Device: dev, r: r}
	if file != nil && file.SetReadDeadline(time.Time{}) == nil {
		t.file = file
		t.rd = newReader(t)
		r.add(t.rd, t.wake)
	}
	return t
}

type idleTUN struct {
	tun.Device
	r    *Releaser
	file DeadlineFile // nil: not woken
	rd   *reader      // nil: not woken
}

// wake makes a blocked read return os.ErrDeadlineExceeded.
func (t *idleTUN) wake() { _ = t.file.SetReadDeadline(time.Unix(1, 0)) }

// Read reads as the device does. The deadline a release set comes back
// as os.ErrDeadlineExceeded, which is taken here: the deadline is
// cleared, the batch given back, and the read done again.
func (t *idleTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := t.Device.Read(bufs, sizes, offset)
		if t.rd != nil && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			_ = t.file.SetReadDeadline(time.Time{})
			t.rd.between(bufs)
			continue
		}
		t.r.saw(n)
		return n, err
	}
}

// Write hands packets to the TUN, then drops the stale references in
// bufs' spare capacity (scrubTail).
func (t *idleTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := t.Device.Write(bufs, offset)
	scrubTail(bufs)
	return n, err
}

// Bind wraps the socket side wireguard-go receives on. wake, if not nil,
// makes each ReceiveFunc of the Bind's current Open return soon with an
// empty batch (no packet of non-zero size); a release calls it, and the
// wrapper gives the reader's batch back when the empty batch comes.
func (r *Releaser) Bind(b conn.Bind, wake func()) conn.Bind {
	return &idleBind{Bind: b, r: r, wake: wake}
}

type idleBind struct {
	conn.Bind
	r    *Releaser
	wake func()

	// readers of the current Open; touched only by Open and Close,
	// which wireguard-go does not call concurrently.
	readers []*reader
}

func (w *idleBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := w.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	w.r.remove(w.readers...)
	w.readers = w.readers[:0]
	out := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		var rd *reader
		if w.wake != nil {
			rd = newReader(w)
			w.readers = append(w.readers, rd)
			w.r.add(rd, w.wake)
		}
		out[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			for {
				n, err := fn(bufs, sizes, eps)
				if err == nil && rd != nil && empty(sizes[:n]) {
					rd.between(bufs)
					continue
				}
				w.r.saw(n)
				return n, err
			}
		}
	}
	return out, actual, nil
}

// Send sends packets, then drops the stale references in bufs' spare
// capacity (scrubTail).
func (w *idleBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := w.Bind.Send(bufs, ep)
	scrubTail(bufs)
	return err
}

func (w *idleBind) Close() error {
	w.r.remove(w.readers...)
	w.readers = nil
	return w.Bind.Close()
}

// empty reports whether a batch holds no packet.
func empty(sizes []int) bool {
	for _, s := range sizes {
		if s > 0 {
			return false
		}
	}
	return true
}

// scrubTail clears the slots of bufs past its length. wireguard-go's
// per-peer sender and receiver each build their batches in one slice
// that they cut back to zero length and append to again, so after a
// burst the slots past a small batch still point at up to 127 buffers of
// earlier batches: those buffers went back to the pool long ago, but the
// stale slots keep them alive (and resident) for as long as the peer
// exists, up to 16 MiB per peer. The slots past the length are not the
// caller's data: the caller overwrites each before using it again, and it
// waits for Send and Write to return, so nothing reads them meanwhile.
//
// It keeps the tail all nil after every call, so one look at the first
// slot past the length tells whether there is anything to clear.
func scrubTail(bufs [][]byte) {
	if len(bufs) == cap(bufs) {
		return
	}
	if tail := bufs[len(bufs):cap(bufs)]; tail[0] != nil {
		clear(tail)
	}
}

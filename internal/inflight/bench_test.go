package inflight

import (
	"crypto/rand"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// benchBatch is wireguard-go's batch on Linux, benchRead the packets one
// read gives: a 64 KB TSO segment cut at a 1420-byte tunnel MTU.
const (
	benchBatch = 128
	benchRead  = 46
)

// benchLoop plays one of the device's readers and the hand-on seam after
// it, as wireguard-go uses them: a batch of 128 buffers, reads of 46
// packets whose buffers are replaced from a free list, and each read's
// packets handed on (Done) and put back after the next read, so that
// the bound holds a batch when the reader comes back, as in the device.
// With b nil it is the same loop without the bound: the path the bound
// is measured against.
type benchLoop struct {
	b     *Bound
	rd    *Reader
	bufs  [][]byte
	sizes []int
	free  [][]byte
	out   [][]byte // the last read's packets, handed on after the next
	next  [][]byte
}

func newBenchLoop(b *Bound, dir Dir) *benchLoop {
	l := &benchLoop{b: b, bufs: make([][]byte, benchBatch), sizes: make([]int, benchBatch)}
	for i := range l.bufs {
		l.bufs[i] = make([]byte, 64)
	}
	if b != nil {
		l.rd = b.Reader(dir)
	}
	for range 3 * benchBatch {
		l.free = append(l.free, make([]byte, 64))
	}
	return l
}

// step reads one batch and hands it on; it returns the packets moved.
func (l *benchLoop) step() int {
	if l.b != nil {
		l.rd.Admit(l.bufs)
	}
	for i := range benchRead {
		l.sizes[i] = 40
		l.bufs[i][0] = 4
	}
	if l.b != nil {
		l.rd.Read(l.bufs, l.sizes, benchRead, 0, nil)
	}
	l.next = l.next[:0]
	for i := range benchRead {
		l.next = append(l.next, l.bufs[i])
		n := len(l.free) - 1
		l.bufs[i], l.free = l.free[n], l.free[:n]
	}
	if l.b != nil {
		l.b.Done(l.out)
	}
	l.free = append(l.free, l.out...)
	l.out, l.next = l.next, l.out
	return benchRead
}

// BenchmarkBoundCost is what the in-flight bound costs per packet on the
// device's path: the same reader and hand-on loop with the bound
// ("bound") and without it ("none"), in one goroutine and in two (one per
// direction, sharing the Bound, as the device's TUN and socket readers
// do), beside sealing one 1420-byte packet with ChaCha20-Poly1305 (the
// work every packet needs anyway) for scale. Compare the sub-benchmarks
// of one run:
//
//	go test -run '^$' -bench BoundCost ./internal/inflight/
func BenchmarkBoundCost(b *testing.B) {
	for _, tc := range []struct {
		name  string
		bound bool
	}{{"none", false}, {"bound", true}} {
		b.Run(tc.name+"/1-reader", func(b *testing.B) {
			var bd *Bound
			if tc.bound {
				bd = New(Options{})
			}
			l := newBenchLoop(bd, Out)
			pkts := 0
			for b.Loop() {
				pkts += l.step()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/packet")
		})
		b.Run(tc.name+"/2-readers", func(b *testing.B) {
			var bd *Bound
			if tc.bound {
				bd = New(Options{})
			}
			var next atomic.Int32
			var pkts atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				l := newBenchLoop(bd, Dir(next.Add(1)%2))
				n := 0
				for pb.Next() {
					n += l.step()
				}
				pkts.Add(int64(n))
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts.Load()), "ns/packet")
		})
	}
	b.Run("seal-1420", func(b *testing.B) {
		key := make([]byte, chacha20poly1305.KeySize)
		rand.Read(key)
		aead, err := chacha20poly1305.New(key)
		if err != nil {
			b.Fatal(err)
		}
		nonce := make([]byte, aead.NonceSize())
		pkt := make([]byte, 1420, 1420+aead.Overhead())
		b.SetBytes(1420)
		for b.Loop() {
			aead.Seal(pkt[:0], nonce, pkt, nil)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
	})
}

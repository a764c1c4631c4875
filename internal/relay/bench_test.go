//go:build unix

package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"weft/internal/key"
)

// benchFrame is the packet size the benchmarks use: a full-size WireGuard
// packet on a 1,500-byte path.
const benchFrame = 1400

// BenchmarkRelayThroughput pushes 1,400-byte packets through one relay
// over loopback, from n senders to n receivers, and reports what arrived
// (Gbit/s of payload) and what the relay dropped because a receiver's
// queue was full.
//
// In "window" runs each sender keeps at most benchWindow packets in flight
// (sent, not yet received), as the TCP flows inside a tunnel do; this
// measures what the relay can carry. In "flood" runs senders push as fast
// as their client lets them, so the relay is overrun and drops: that shows
// what it still delivers under overload.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, mode := range []string{"window", "flood"} {
		for _, pairs := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/pairs=%d", mode, pairs), func(b *testing.B) {
				benchThroughput(b, pairs, mode == "window")
			})
		}
	}
}

// benchWindow is the in-flight limit of window runs: below the relay's
// per-client queue, so a window run is never dropped by design.
const benchWindow = 128

func benchThroughput(b *testing.B, pairs int, windowed bool) {
	var keys []key.NodePrivate
	for range 2 * pairs {
		keys = append(keys, key.NewNode())
	}
	r := startSimpleRelay(b, allow(keys...))
	senders := make([]*Client, pairs)
	receivers := make([]*Client, pairs)
	windows := make([]chan struct{}, pairs)
	for i := range pairs {
		senders[i] = connect(b, r.url, keys[2*i])
		receivers[i] = connect(b, r.url, keys[2*i+1])
		windows[i] = make(chan struct{}, benchWindow)
	}
	var got atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	var rwg sync.WaitGroup
	for i, rc := range receivers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				if _, err := rc.Recv(ctx); err != nil {
					return
				}
				got.Add(1)
				if windowed {
					<-windows[i]
				}
			}
		}()
	}
	defer func() {
		cancel()
		rwg.Wait()
	}()

	base := r.srv.Stats()
	per := max(b.N/pairs, 1)
	total := uint64(per * pairs)
	pkt := make([]byte, benchFrame)
	b.SetBytes(benchFrame)
	b.ResetTimer()
	cpu0 := processCPU(b)
	start := time.Now()
	var swg sync.WaitGroup
	for i, sc := range senders {
		dst := keys[2*i+1].Public()
		swg.Add(1)
		go func() {
			defer swg.Done()
			for range per {
				if windowed {
					windows[i] <- struct{}{}
				}
				// A full client queue is back-pressure: wait for room,
				// so that every packet reaches the relay.
				for {
					err := sc.Send(dst, pkt)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						b.Error(err)
						return
					}
					runtime.Gosched()
				}
			}
		}()
	}
	swg.Wait()
	// Wait until the relay has read every packet, then until every
	// forwarded one has arrived.
	var st Stats
	for {
		st = r.srv.Stats()
		if st.PacketsForwarded+st.DropsQueueFull-base.PacketsForwarded-base.DropsQueueFull >= total {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	forwarded := st.PacketsForwarded - base.PacketsForwarded
	for got.Load() < forwarded {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	bits := float64(got.Load()) * benchFrame * 8
	b.ReportMetric(bits/elapsed.Seconds()/1e9, "Gbit/s")
	// Per CPU-second of this whole process (relay, senders and receivers
	// alike), so the figure holds on a shared machine and compares with
	// "per vCPU" figures; for the relay alone it is an underestimate.
	b.ReportMetric(bits/cpu.Seconds()/1e9, "Gbit/cpu-s")
	b.ReportMetric(100*float64(st.DropsQueueFull-base.DropsQueueFull)/float64(total), "drop%")
}

// BenchmarkRelayLatency measures the round trip a → relay → b → relay → a
// against a direct loopback TCP echo of the same frames, interleaved in the
// same run so both see the same machine load. "added-us" is the latency
// one pass through the relay adds; "ratio" is relay round trip over direct.
func BenchmarkRelayLatency(b *testing.B) {
	ka, kb := key.NewNode(), key.NewNode()
	r := startSimpleRelay(b, allow(ka, kb))
	ca, cb := connect(b, r.url, ka), connect(b, r.url, kb)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go echoBack(ctx, cb) // b echoes whatever it receives

	echo := startTCPEcho(b)
	dc, err := net.Dial("tcp", echo)
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	dbr, dbw := bufio.NewReader(dc), bufio.NewWriter(dc)

	pkt := make([]byte, benchFrame)
	var relayTotal, directTotal time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := writeFrame(dbw, FrameSendPacket, pkt); err != nil {
			b.Fatal(err)
		}
		dbw.Flush()
		if _, _, err := readFrame(dbr, MaxFramePayload); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := ca.Send(kb.Public(), pkt); err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Recv(ctx); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		directTotal += t1.Sub(t0)
		relayTotal += t2.Sub(t1)
	}
	b.StopTimer()
	n := float64(b.N)
	relayRT, directRT := relayTotal.Seconds()/n, directTotal.Seconds()/n
	b.ReportMetric(relayRT*1e6, "relay-rt-us")
	b.ReportMetric(directRT*1e6, "direct-rt-us")
	b.ReportMetric((relayRT-directRT)/2*1e6, "added-us")
	b.ReportMetric(relayRT/directRT, "ratio")
}

// startTCPEcho serves a loopback TCP echo of relay frames: the baseline
// the relay's latency is compared with.
func startTCPEcho(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					t, p, err := readFrame(br, MaxFramePayload)
					if err != nil {
						return
					}
					writeFrame(bw, t, p)
					if bw.Flush() != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// processCPU returns the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelayLatencyUnderFlood measures what a flooding client does to
// the others' latency: a sends to b through the relay and b echoes it,
// b.N round trips with nobody else busy, then b.N more while a third
// client pushes 1,400-byte packets at a fourth as fast as it can, under
// the embedded relay's default per-client rate limit. It reports both
// round trips and their ratio (the standing suite's "others' latency
// holds", as a figure rather than a test threshold).
func BenchmarkRelayLatencyUnderFlood(b *testing.B) {
	const rate = 16 << 20 // weft server's default --relay-rate-limit
	ka, kb, flooder, sink := key.NewNode(), key.NewNode(), key.NewNode(), key.NewNode()
	r := startRelay(b, ServerOptions{Authorizer: allow(ka, kb, flooder, sink), RateLimit: rate})
	ca, cb := connect(b, r.url, ka), connect(b, r.url, kb)
	connect(b, r.url, sink) // never reads: the relay drops what does not fit its queue
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go echoBack(ctx, cb)
	pkt := make([]byte, benchFrame)
	rounds := func() time.Duration {
		var total time.Duration
		for range b.N {
			t0 := time.Now()
			if err := ca.Send(kb.Public(), pkt); err != nil {
				b.Fatal(err)
			}
			if _, err := ca.Recv(ctx); err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
		}
		return total / time.Duration(b.N)
	}
	b.ResetTimer()
	quiet := rounds()

	fc, err := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: flooder})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := fc.dial(ctx, fc.urls[0])
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dst := sink.Public().Raw32()
		for ctx.Err() == nil {
			cc.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if err := writeFrame(cc.bw, FrameSendPacket, dst[:], pkt); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			cc.bw.Flush()
		}
	}()
	flooded := rounds()
	b.StopTimer()
	cancel()
	cc.nc.Close()
	wg.Wait()
	b.ReportMetric(float64(quiet.Microseconds()), "quiet-rt-us")
	b.ReportMetric(float64(flooded.Microseconds()), "flood-rt-us")
	b.ReportMetric(flooded.Seconds()/quiet.Seconds(), "ratio")
}

// echoBack sends every packet c receives back to its sender until ctx
// ends.
func echoBack(ctx context.Context, c *Client) {
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			return
		}
		if p, ok := m.(ReceivedPacket); ok {
			c.Send(p.Src, p.Data)
		}
	}
}

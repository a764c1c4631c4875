package relay

import (
	"runtime"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/tstest"
)

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestStalledReceiversBoundMemory: receivers that never read make the
// relay queue what it cannot write; the queue of each is bounded in bytes
// and all queues together by the relay's total, whatever the packet size.
// Packets over the bounds are dropped and counted.
func TestStalledReceiversBoundMemory(t *testing.T) {
	const (
		receivers  = 4
		perClient  = 1 << 20
		total      = 3 << 20 // under receivers × perClient: both bounds are hit
		perReceive = 600     // max-size packets sent to each receiver: 37.5 MiB each
	)
	sender := key.NewNode()
	keys := []key.NodePrivate{sender}
	for range receivers {
		keys = append(keys, key.NewNode())
	}
	r := startRelay(t, ServerOptions{Authorizer: allow(keys...), QueueBytes: perClient, MaxQueuedBytes: total, WriteTimeout: time.Hour})
	// Bare connections: nothing reads for the stalled receivers, and the
	// sender writes frames itself, so no client-side queue holds memory.
	for _, k := range keys[1:] {
		bareConn(t, r.url, k)
	}
	tstest.Eventually(t, "receivers connected", func() bool { return r.srv.Stats().Clients == receivers })
	snd := bareConn(t, r.url, sender)
	before := heapInUse()
	pkt := make([]byte, MaxPacketSize)
	sent := uint64(0)
	// One receiver after the other: the first ones fill their own
	// queues, the last ones find the relay's total reached.
	for _, k := range keys[1:] {
		dst := k.Public().Raw32()
		for i := range perReceive {
			if err := writeFrame(snd.bw, FrameSendPacket, dst[:], pkt); err != nil {
				t.Fatal(err)
			}
			sent++
			if i%16 == 15 {
				if err := snd.bw.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := snd.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	tstest.Eventually(t, "every packet forwarded or dropped", func() bool {
		st := r.srv.Stats()
		return st.PacketsForwarded+st.DropsQueueFull+st.DropsRelayFull == sent
	})
	st := r.srv.Stats()
	grown := int64(heapInUse()) - int64(before)
	t.Logf("sent %d packets of %d bytes; stats %+v; heap grew %d KiB", sent, len(pkt), st, grown>>10)
	if st.QueuedBytes > total {
		t.Errorf("queued %d bytes, over the relay's bound of %d", st.QueuedBytes, total)
	}
	if st.DropsQueueFull == 0 || st.DropsRelayFull == 0 {
		t.Error("drops at one of the bounds not counted though receivers stalled")
	}
	// What the kernel's socket buffers took is not on the heap; the rest
	// is queued, within the bound, plus slack for the test's own garbage.
	if grown > total+8<<20 {
		t.Errorf("heap grew by %d MiB with the relay's queues bounded at %d MiB", grown>>20, total>>20)
	}
}

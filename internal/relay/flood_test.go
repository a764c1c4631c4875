package relay

import (
	"context"
	"testing"
	"time"

	"weft/internal/key"
)

// TestFloodingClientRateLimitedOthersServed: a client that sends as fast
// as it can gets no more through than its rate limit allows (the bound is
// computed from the time the test itself measured, not a threshold), and
// meanwhile other clients' packets and pings go through.
func TestFloodingClientRateLimitedOthersServed(t *testing.T) {
	const rate = 256 << 10
	flooder, sink, a, b := key.NewNode(), key.NewNode(), key.NewNode(), key.NewNode()
	r := startRelay(t, ServerOptions{Authorizer: allow(flooder, sink, a, b), RateLimit: rate})
	connect(t, r.url, sink)
	ca, cb := connect(t, r.url, a), connect(t, r.url, b)

	fc, err := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: flooder})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := fc.dial(context.Background(), fc.urls[0])
	if err != nil {
		t.Fatal(err)
	}
	defer cc.nc.Close()
	dst := sink.Public().Raw32()
	pkt := make([]byte, 1200)
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			cc.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if err := writeFrame(cc.bw, FrameSendPacket, dst[:], pkt); err != nil {
				return
			}
			cc.bw.Flush() // a timeout here is the relay pushing back
		}
	}()
	for i := range 5 {
		msg := []byte{byte(i)}
		if err := ca.Send(b.Public(), msg); err != nil {
			t.Fatal(err)
		}
		for {
			if p := recvPacket(t, cb); len(p.Data) == 1 && p.Data[0] == byte(i) {
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cb.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ping during the flood: %v", err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	st := r.srv.Stats()
	elapsed := time.Since(start) // after the counters: they cannot be ahead of it
	// The bucket starts full (a second's worth, and room for at least one
	// largest frame); after that, rate bytes per second. The others' few
	// bytes are included.
	allowed := max(rate, float64(MaxFramePayload+frameHeaderLen)) + rate*elapsed.Seconds() + 1024
	through := float64(st.BytesForwarded + (st.PacketsForwarded+st.DropsQueueFull+st.DropsRelayFull)*(key.Len+frameHeaderLen))
	t.Logf("%.0f bytes through in %v (%.0f allowed); stats %+v", through, elapsed, allowed, st)
	if through > allowed {
		t.Fatalf("%.0f bytes went through in %v, more than the rate limit allows (%.0f)", through, elapsed, allowed)
	}
}

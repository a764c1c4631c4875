package netstack

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"weft/internal/osnet"
	"weft/internal/tailnet"
)

// TestBurstWaitsInsteadOfDropping sends a burst of datagrams larger than
// the link's queue while nothing reads the device (wireguard-go falling
// behind), then lets the device be read: every datagram arrives, the
// sender waited, and the link dropped nothing. A link that drops what does
// not fit its queue lost a third of this burst and stalled TCP streams
// through the SOCKS5 proxy (docs/benchmarks.md).
func TestBurstWaitsInsteadOfDropping(t *testing.T) {
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.TUN().Close(); b.TUN().Close() })
	tn := []netip.Prefix{tailnet.V4Range}
	a.Apply(osnet.Config{Addresses: []netip.Prefix{addrA}, TailnetRoutes: tn})
	b.Apply(osnet.Config{Addresses: []netip.Prefix{addrB}, TailnetRoutes: tn})
	start := make(chan struct{})
	go pump(a, b, start)
	go pump(b, a, nil)

	const burst = outQueue + outQueue/2
	dst := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(addrB.Addr().AsSlice()), Port: 5353}
	rx, err := gonet.DialUDP(b.st, &dst, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 100)
		n := 0
		rx.SetReadDeadline(time.Now().Add(20 * time.Second))
		for n < burst {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				break
			}
			n++
		}
		got <- n
	}()
	src := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(addrA.Addr().AsSlice())}
	tx, err := gonet.DialUDP(a.st, &src, &dst, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	sent := make(chan error, 1)
	go func() {
		for i := range burst {
			if _, err := fmt.Fprintf(tx, "datagram %d", i); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	// The burst fills the queue and the sender waits for room.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for a.Stats().LinkWaits == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the sender never found the queue full: %+v", a.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	close(start)
	if err := <-sent; err != nil {
		t.Fatalf("sending the burst: %v", err)
	}
	if n := <-got; n != burst {
		t.Errorf("%d of %d datagrams arrived", n, burst)
	}
	st := a.Stats()
	if st.LinkDrops != 0 || st.LinkHanded != st.LinkRead {
		t.Errorf("the link lost packets: %+v", st)
	}
}

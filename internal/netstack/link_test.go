package netstack

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// TestBurstWaitsInsteadOfDropping sends a burst of datagrams larger than
// the link's queue while nothing reads the device (wireguard-go falling
// behind), then lets the device be read: every datagram arrives, the
// sender waited, and the link dropped nothing. A link that drops what does
// not fit its queue lost a third of this burst and stalled TCP streams
// through the SOCKS5 proxy (docs/benchmarks.md).
func TestBurstWaitsInsteadOfDropping(t *testing.T) {
	start := make(chan struct{})
	a, b := tailnetPair(t, start)

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

// TestBulkTCPIntact sends a 16 MiB stream from one stack to a localhost
// listener behind the other, through batched device reads and writes
// (receive offload joins the segments of each batch), and checks it
// arrives byte for byte with nothing dropped at either link.
func TestBulkTCPIntact(t *testing.T) {
	a, b := tailnetPair(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 16 << 20
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", netip.AddrPortFrom(addrB.Addr(), uint16(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	want := sha256.New()
	if _, err := io.Copy(c, io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), want)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if sum := <-got; sum != [32]byte(want.Sum(nil)) {
		t.Error("the stream arrived altered or cut short")
	}
	for name, s := range map[string]*Stack{"sender": a, "receiver": b} {
		if st := s.Stats(); st.LinkDrops != 0 {
			t.Errorf("the %s's link dropped packets: %+v", name, st)
		}
	}
}

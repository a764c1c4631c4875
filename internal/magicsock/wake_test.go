package magicsock

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/key"
)

// TestWakeReceivers opens a Conn on the host's loopback network and
// blocks a read in every ReceiveFunc: a datagram from a stranger must not
// end a read (it is dropped and the read goes on), WakeReceivers must end
// each with an empty batch, and the reads after it must block again.
//
// It runs over the host's bind and over the one macOS uses (sockBind,
// which wakes its reads with a deadline instead of a datagram).
// A third run drops every send of macOS's bind, as a wake-up datagram
// over loopback may be lost to sockets bound to another interface: the
// bind wakes its reads itself (ReadWaker).
func TestWakeReceivers(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			testWakeReceivers(t, bindNet{newBind: func() conn.Bind { return newHostBind(goos) }})
		})
	}
	t.Run("darwin, sends dropped", func(t *testing.T) {
		testWakeReceivers(t, bindNet{newBind: func() conn.Bind { return noSendBind{newHostBind("darwin").(*familyBind)} }})
	})
}

// noSendBind drops every send; it keeps familyBind's other methods
// (WakeReads, Port6).
type noSendBind struct{ *familyBind }

func (noSendBind) Send([][]byte, conn.Endpoint) error { return nil }

// bindNet is the host network with the main-socket bind newBind makes.
type bindNet struct {
	HostNetwork
	newBind func() conn.Bind
}

func (n bindNet) NewBind() conn.Bind { return n.newBind() }

func testWakeReceivers(t *testing.T, network Network) {
	c, err := New(Options{DiscoKey: key.NewDisco(), NodeKey: key.NewNode().Public(), Network: network})
	if err != nil {
		t.Fatal(err)
	}
	fns, port, err := c.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type result struct {
		i, n, size int
		err        error
	}
	results := make(chan result, 16)
	read := func(i int) {
		// wireguard-go's batch: the socket's offloads expect it.
		bufs := make([][]byte, conn.IdealBatchSize)
		for i := range bufs {
			bufs[i] = make([]byte, 64<<10)
		}
		sizes := make([]int, len(bufs))
		eps := make([]conn.Endpoint, len(bufs))
		n, err := fns[i](bufs, sizes, eps)
		total := 0
		for _, s := range sizes[:n] {
			total += s
		}
		results <- result{i, n, total, err}
	}
	for i := range fns {
		go read(i)
	}
	stranger, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := stranger.Write(append([]byte(wakePrefix), make([]byte, 16)...)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		t.Fatalf("receive func %d returned (%d packets, %d bytes, %v) for a stranger's datagram", r.i, r.n, r.size, r.err)
	case <-time.After(200 * time.Millisecond):
	}

	c.WakeReceivers()
	woken := map[int]bool{}
	timeout := time.After(10 * time.Second)
	for len(woken) < len(fns) {
		select {
		case r := <-results:
			if r.err != nil || r.size != 0 {
				t.Fatalf("receive func %d woke with %d bytes, %v; want an empty batch", r.i, r.size, r.err)
			}
			woken[r.i] = true
		case <-timeout:
			t.Fatalf("woken %v of %d receive funcs", woken, len(fns))
		}
	}
	for i := range fns {
		go read(i)
	}
	select {
	case r := <-results:
		t.Fatalf("receive func %d returned again with nothing sent: %+v", r.i, r)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestHostBindReadsOneSocketPerFamily: the host's bind hands wireguard-go
// one receive function per family that carries traffic (the IPv4 bind's
// IPv4 socket, the IPv6 bind's IPv6 one), not the two idle sockets, each
// of whose readers would hold 8 MiB of buffers.
func TestHostBindReadsOneSocketPerFamily(t *testing.T) {
	b := HostNetwork{}.NewBind()
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var names []string
	for _, fn := range fns {
		names = append(names, fn.PrettyName())
	}
	if len(fns) > 2 || len(fns) == 0 || names[0] != "v4" || (len(fns) == 2 && names[1] != "v6") {
		t.Errorf("receive functions %v, want one IPv4 and (with IPv6) one IPv6", names)
	}
}

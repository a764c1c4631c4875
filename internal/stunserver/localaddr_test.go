package stunserver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// TestAnswerLeavesFromAskedAddress: a server listening on a wildcard
// socket answers from the address the request was sent to, not from the
// address the kernel would pick by route. 127.0.0.2 is a second address
// of the loopback device on Linux; a client on 127.0.0.1 asking it would
// be answered from 127.0.0.1 without packet info, which a NAT in front of
// a real client drops.
func TestAnswerLeavesFromAskedAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			pcs, err := listen(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var s Server
			done := make(chan error, len(pcs))
			for _, pc := range pcs {
				go func() { done <- s.Serve(ctx, pc) }()
			}
			port := pcs[0].LocalAddr().(*net.UDPAddr).Port

			client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			asked := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(port))
			if _, err := client.WriteToUDPAddrPort(bindingRequest(t).Raw, asked); err != nil {
				t.Skipf("cannot send to %v here: %v", asked, err)
			}
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1500)
			n, from, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if from.Addr().Unmap() != asked.Addr() || from.Port() != asked.Port() {
				t.Fatalf("answer came from %v, want %v (the address that was asked)", from, asked)
			}
			var m stun.Message
			m.Raw = buf[:n]
			var xa stun.XORMappedAddress
			if err := m.Decode(); err != nil || xa.GetFrom(&m) != nil {
				t.Fatalf("bad answer: %v", err)
			}
			if want := client.LocalAddr().(*net.UDPAddr); !xa.IP.Equal(want.IP) || xa.Port != want.Port {
				t.Fatalf("mapped address %v:%d, want %v", xa.IP, xa.Port, want)
			}
			cancel()
			for range pcs {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

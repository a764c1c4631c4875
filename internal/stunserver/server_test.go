package stunserver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func bindingRequest(t testing.TB, extra ...stun.Setter) *stun.Message {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, extra...)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReply(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.7:41641")
	good := bindingRequest(t)
	withFP := bindingRequest(t, stun.Fingerprint)
	badFP := bindingRequest(t, stun.Fingerprint)
	badFP.Raw = append([]byte(nil), badFP.Raw...)
	badFP.Raw[len(badFP.Raw)-1] ^= 0xff
	success, _ := stun.Build(stun.TransactionID, stun.BindingSuccess)
	indication, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))
	allocate, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))

	tests := []struct {
		name   string
		pkt    []byte
		src    netip.AddrPort
		answer bool
	}{
		{"binding request", good.Raw, src, true},
		{"with fingerprint", withFP.Raw, src, true},
		{"mapped v4 source", good.Raw, netip.MustParseAddrPort("[::ffff:203.0.113.7]:41641"), true},
		{"v6 source", good.Raw, netip.MustParseAddrPort("[2001:db8::1]:41641"), true},
		{"bad fingerprint", badFP.Raw, src, false},
		{"success is not a request", success.Raw, src, false},
		{"indication", indication.Raw, src, false},
		{"other method", allocate.Raw, src, false},
		{"empty", nil, src, false},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), src, false},
		{"truncated", good.Raw[:19], src, false},
		{"port zero", good.Raw, netip.MustParseAddrPort("203.0.113.7:0"), false},
		{"invalid source", good.Raw, netip.AddrPort{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Reply(tt.pkt, tt.src)
			if (out != nil) != tt.answer {
				t.Fatalf("Reply answered=%v, want %v", out != nil, tt.answer)
			}
			if out == nil {
				return
			}
			checkAnswer(t, out, tt.pkt, tt.src)
		})
	}
}

// checkAnswer asserts that out is a valid Binding success for request req
// that tells src its own address.
func checkAnswer(t testing.TB, out, req []byte, src netip.AddrPort) {
	t.Helper()
	var m stun.Message
	m.Raw = append([]byte(nil), out...)
	if err := m.Decode(); err != nil {
		t.Fatalf("answer does not decode: %v", err)
	}
	if m.Type != stun.BindingSuccess {
		t.Fatalf("answer type %v, want binding success", m.Type)
	}
	if !bytes.Equal(m.TransactionID[:], req[8:20]) {
		t.Fatalf("answer transaction ID %x, want %x", m.TransactionID, req[8:20])
	}
	// The answer has a FINGERPRINT when the request had one.
	rm := stun.Message{Raw: append([]byte(nil), req...)}
	if rm.Decode() == nil && rm.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(&m); err != nil {
			t.Fatalf("answer fingerprint: %v", err)
		}
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(&m); err != nil {
		t.Fatalf("answer has no XOR-MAPPED-ADDRESS: %v", err)
	}
	ip, _ := netip.AddrFromSlice(xor.IP)
	got := netip.AddrPortFrom(ip.Unmap(), uint16(xor.Port))
	want := netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if got != want {
		t.Fatalf("mapped address %v, want %v", got, want)
	}
}

// plainPacketConn hides the *net.UDPConn behind the PacketConn interface,
// as a caller's own conn type would.
type plainPacketConn struct{ net.PacketConn }

func TestServe(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		name := "UDPConn"
		if wrap {
			name = "other PacketConn"
		}
		t.Run(name, func(t *testing.T) { testServe(t, wrap) })
	}
}

func testServe(t *testing.T, wrap bool) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if wrap {
		pc = plainPacketConn{pc}
	}
	s := &Server{}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc) }()

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	me := c.LocalAddr().(*net.UDPAddr).AddrPort()

	// Garbage first: the server must stay up and answer the request that
	// follows it.
	if _, err := c.WriteToUDPAddrPort([]byte("not stun at all"), server); err != nil {
		t.Fatal(err)
	}
	req := bindingRequest(t)
	if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if from != server {
		t.Fatalf("answer from %v, want %v", from, server)
	}
	checkAnswer(t, buf[:n], req.Raw, me)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
}

func TestCloseStopsServe(t *testing.T) {
	s := &Server{}
	errc := make(chan error, 1)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { errc <- s.Serve(t.Context(), pc) }()
	// Close may run before Serve registers pc; either way Serve must end.
	s.Close()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve after Close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if err := s.ListenAndServe(t.Context(), "127.0.0.1:0"); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe after Close = %v, want ErrServerClosed", err)
	}
}

func FuzzReply(f *testing.F) {
	f.Add(bindingRequest(f).Raw, []byte{203, 0, 113, 7}, uint16(41641))
	f.Add(bindingRequest(f, stun.Fingerprint).Raw, []byte{127, 0, 0, 1}, uint16(1))
	f.Add([]byte{0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0x80, 0, 0}, []byte(net.ParseIP("2001:db8::1").To16()), uint16(3478))
	f.Fuzz(func(t *testing.T, pkt, ip []byte, port uint16) {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		src := netip.AddrPortFrom(addr, port)
		out := Reply(pkt, src)
		if out == nil {
			return
		}
		if len(out) > maxPacket {
			t.Fatalf("answer of %d bytes", len(out))
		}
		checkAnswer(t, out, pkt, src)
	})
}

// TestAnswerNoLargerThanNeeded: a STUN server answers forged sources too,
// so its answer must not be much larger than the request: only the mapped
// address is added (12 bytes for IPv4, 24 for IPv6), with no SOFTWARE.
func TestAnswerNoLargerThanNeeded(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
		src  netip.AddrPort
	}{
		{"bare request, IPv4", bindingRequest(t).Raw, netip.MustParseAddrPort("198.51.100.7:4242")},
		{"with fingerprint, IPv4", bindingRequest(t, stun.Fingerprint).Raw, netip.MustParseAddrPort("198.51.100.7:4242")},
		{"bare request, IPv6", bindingRequest(t).Raw, netip.MustParseAddrPort("[2001:db8::7]:4242")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Reply(tt.req, tt.src)
			if out == nil {
				t.Fatal("no answer")
			}
			addrAttr := 12
			if tt.src.Addr().Is6() {
				addrAttr = 24
			}
			if len(out) > len(tt.req)+addrAttr {
				t.Errorf("answer of %d bytes to a request of %d: more than the mapped address added", len(out), len(tt.req))
			}
			var m stun.Message
			m.Raw = out
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			if m.Contains(stun.AttrSoftware) {
				t.Error("answer carries SOFTWARE")
			}
			checkAnswer(t, out, tt.req, tt.src)
		})
	}
}

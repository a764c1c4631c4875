package magicsock

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// famRec is a conn.Bind that records what it is asked to send.
type famRec struct {
	port  uint16
	asked []uint16 // ports Open was called with
	sent  []netip.AddrPort
	open  bool
}

func (b *famRec) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	if b.open {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	b.open, b.asked = true, append(b.asked, port)
	return []conn.ReceiveFunc{nil}, b.port, nil
}
func (b *famRec) Close() error                       { b.open = false; return nil }
func (b *famRec) SetMark(uint32) error               { return nil }
func (b *famRec) BatchSize() int                     { return 1 }
func (b *famRec) Send([][]byte, conn.Endpoint) error { return nil }
func (b *famRec) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return &conn.StdNetEndpoint{AddrPort: ap}, err
}

// famSend records sends by destination.
type famSend struct{ *famRec }

func (b famSend) Send(_ [][]byte, ep conn.Endpoint) error {
	b.sent = append(b.sent, ep.(*conn.StdNetEndpoint).AddrPort)
	return nil
}

// TestFamilyBind: every IPv4 destination goes to the IPv4 bind and every
// IPv6 one to the other, whatever the order (one StdNetBind sending both
// families corrupts IPv6 destinations); the IPv4 bind gets the asked
// port, the IPv6 one its own, reported by Port6 while open.
func TestFamilyBind(t *testing.T) {
	r4, r6 := &famRec{port: 41641}, &famRec{port: 50000}
	b := newFamilyBind(famSend{r4}, famSend{r6})
	fns, port, err := b.Open(41641)
	if err != nil {
		t.Fatal(err)
	}
	if port != 41641 || b.Port6() != 50000 || len(fns) != 2 || !slices.Equal(r4.asked, []uint16{41641}) || !slices.Equal(r6.asked, []uint16{0}) {
		t.Fatalf("Open: port %d, Port6 %d, %d funcs; IPv4 bind asked %v, IPv6 bind %v", port, b.Port6(), len(fns), r4.asked, r6.asked)
	}
	dsts := []string{"203.0.113.21:1000", "[2001:db8:1::10]:2000", "198.51.100.7:3000", "[2001:db8:2::10]:4000", "[2001:db8:1::10]:2000"}
	for _, d := range dsts {
		ep, err := b.ParseEndpoint(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Send([][]byte{{1}}, ep); err != nil {
			t.Fatal(err)
		}
	}
	var want4, want6 []netip.AddrPort
	for _, d := range dsts {
		ap := netip.MustParseAddrPort(d)
		if ap.Addr().Is4() {
			want4 = append(want4, ap)
		} else {
			want6 = append(want6, ap)
		}
	}
	if !slices.Equal(r4.sent, want4) || !slices.Equal(r6.sent, want6) {
		t.Errorf("IPv4 bind sent to %v, IPv6 bind to %v; want %v and %v", r4.sent, r6.sent, want4, want6)
	}
	if err := b.Close(); err != nil || r4.open || r6.open || b.Port6() != 0 {
		t.Errorf("Close: %v; binds open %v %v; Port6 %d", err, r4.open, r6.open, b.Port6())
	}
}

// famFail fails to open.
type famFail struct{ famRec }

func (b *famFail) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	return nil, 0, errors.New("no")
}

// TestFamilyBindOpenFails: when the IPv6 bind cannot open, the IPv4 one
// is closed again and Open fails.
func TestFamilyBindOpenFails(t *testing.T) {
	r4 := &famRec{port: 1}
	b := newFamilyBind(r4, &famFail{})
	if _, _, err := b.Open(0); err == nil || r4.open {
		t.Errorf("Open with a failing IPv6 bind: err %v, IPv4 bind left open %v", err, r4.open)
	}
}

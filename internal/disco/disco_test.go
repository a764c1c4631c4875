package disco

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"weft/internal/key"
)

func TestRoundTrip(t *testing.T) {
	a, b := key.NewDisco(), key.NewDisco()
	ab := NewSharedKey(a, b.Public())
	ba := NewSharedKey(b, a.Public())
	tests := []struct {
		name string
		msg  Message
	}{
		{"ping", &Ping{TxID: NewTxID(), NodeKey: key.NewNode().Public()}},
		{"padded ping", &Ping{TxID: NewTxID(), NodeKey: key.NewNode().Public(), Padding: PaddingFor(1472)}},
		{"pong v4", &Pong{TxID: NewTxID(), Src: netip.MustParseAddrPort("203.0.113.7:41641")}},
		{"pong v6", &Pong{TxID: NewTxID(), Src: netip.MustParseAddrPort("[2001:db8::1]:9")}},
		{"pong zero src", &Pong{TxID: NewTxID()}},
		{"call-me-maybe", &CallMeMaybe{Endpoints: []netip.AddrPort{
			netip.MustParseAddrPort("192.168.1.4:41641"),
			netip.MustParseAddrPort("198.51.100.2:1"),
			netip.MustParseAddrPort("[2001:db8::2]:65535"),
		}}},
		{"call-me-maybe empty", &CallMeMaybe{Endpoints: []netip.AddrPort{}}},
		{"port guess easy", &PortGuess{Public: netip.MustParseAddrPort("198.51.100.9:4000"), Sockets: 256, Probes: 1024, WindowMS: 3000}},
		{"port guess hard", &PortGuess{Hard: true, Public: netip.MustParseAddrPort("203.0.113.1:0"), Sockets: 256, Probes: 1024, WindowMS: 3000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := ab.Seal(tt.msg)
			if !LooksLikeDisco(pkt) {
				t.Fatal("sealed packet does not look like disco")
			}
			sender, err := Sender(pkt)
			if err != nil || sender != a.Public() {
				t.Fatalf("Sender = %v, %v; want %v", sender, err, a.Public())
			}
			got, err := ba.Open(pkt)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !reflect.DeepEqual(got, tt.msg) {
				t.Fatalf("got %#v, want %#v", got, tt.msg)
			}
		})
	}
}

func TestOpenFails(t *testing.T) {
	a, b, c := key.NewDisco(), key.NewDisco(), key.NewDisco()
	pkt := NewSharedKey(a, b.Public()).Seal(&Ping{TxID: NewTxID()})
	t.Run("wrong key", func(t *testing.T) {
		if _, err := NewSharedKey(c, a.Public()).Open(pkt); !errors.Is(err, ErrOpen) {
			t.Fatalf("err = %v, want ErrOpen", err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		bad := append([]byte(nil), pkt...)
		bad[len(bad)-1] ^= 1
		if _, err := NewSharedKey(b, a.Public()).Open(bad); !errors.Is(err, ErrOpen) {
			t.Fatalf("err = %v, want ErrOpen", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		if _, err := NewSharedKey(b, a.Public()).Open(pkt[:Overhead-1]); !errors.Is(err, ErrNotDisco) {
			t.Fatalf("err = %v, want ErrNotDisco", err)
		}
	})
}

func TestLooksLikeDisco(t *testing.T) {
	long := make([]byte, 200)
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"wireguard initiation", append([]byte{1, 0, 0, 0}, long...), false},
		{"wireguard data", append([]byte{4, 0, 0, 0}, long...), false},
		{"stun", append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, long...), false},
		{"magic only", []byte(Magic), false},
		{"magic and body", append([]byte(Magic), long...), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LooksLikeDisco(tt.pkt); got != tt.want {
				t.Fatalf("LooksLikeDisco = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short ping", []byte{byte(TypePing), 0, 1, 2}, ErrShort},
		{"short pong", []byte{byte(TypePong), 0, 1}, ErrShort},
		{"short guess", []byte{byte(TypePortGuess), 0}, ErrShort},
		{"unknown", []byte{99, 0}, ErrUnknown},
		{"future version", []byte{byte(TypePing), 7}, ErrBadVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCallMeMaybeBounded(t *testing.T) {
	eps := make([]netip.AddrPort, MaxEndpoints+10)
	for i := range eps {
		eps[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1000)
	}
	m, err := Parse((&CallMeMaybe{Endpoints: eps}).AppendMarshal(nil))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.(*CallMeMaybe).Endpoints); n != MaxEndpoints {
		t.Fatalf("got %d endpoints, want %d", n, MaxEndpoints)
	}
}

// TestPaddingFor: a ping padded with PaddingFor(n) seals to exactly n bytes,
// the UDP payload a path MTU probe needs; sizes below an unpadded ping get
// no padding.
func TestPaddingFor(t *testing.T) {
	a, b := key.NewDisco(), key.NewDisco()
	ab := NewSharedKey(a, b.Public())
	plain := len(ab.Seal(&Ping{TxID: NewTxID()}))
	for _, payload := range []int{1200, 1252, 1372, 1412, 1432, 1452, 1464, 1472} {
		if got := len(ab.Seal(&Ping{TxID: NewTxID(), Padding: PaddingFor(payload)})); got != payload {
			t.Errorf("ping padded for %d bytes seals to %d", payload, got)
		}
	}
	if p := PaddingFor(plain - 1); p != 0 {
		t.Errorf("PaddingFor(%d) = %d, want 0", plain-1, p)
	}
	if p := PaddingFor(1 << 20); p != MaxPadding {
		t.Errorf("PaddingFor(1 MiB) = %d, want MaxPadding", p)
	}
}

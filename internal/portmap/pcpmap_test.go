package portmap

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// pcpMapAnswer builds the MAP response a server would send to req: the
// request's MAP payload with the response bit, result code, lifetime and
// the external address:port filled in.
func pcpMapAnswer(req []byte, result uint8, life uint32, ext netip.AddrPort) []byte {
	b := make([]byte, pcpMapRespLen)
	b[0], b[1], b[3] = pcpVersion, pcpResponseBit|pcpOpMap, result
	binary.BigEndian.PutUint32(b[4:], life)
	binary.BigEndian.PutUint32(b[8:], 1234) // epoch
	copy(b[pcpHeaderLen:], req[pcpHeaderLen:])
	binary.BigEndian.PutUint16(b[pcpHeaderLen+18:], ext.Port())
	a := ext.Addr().As16()
	copy(b[pcpHeaderLen+20:], a[:])
	return b
}

func TestPCPMapRoundTrip(t *testing.T) {
	nonce := newPCPNonce()
	req := pcpMapRequest{Client: netip.MustParseAddr("192.168.2.10"), Nonce: nonce, Port: 41641, Suggest: 41641, Lifetime: 7200}
	b := appendPCPMap(nil, req)
	if len(b) != pcpMapRespLen {
		t.Fatalf("request is %d bytes, want %d", len(b), pcpMapRespLen)
	}
	if b[0] != pcpVersion || b[1] != pcpOpMap || binary.BigEndian.Uint32(b[4:]) != 7200 {
		t.Fatalf("header % x", b[:8])
	}
	if got := netip.AddrFrom16([16]byte(b[8:24])).Unmap(); got != req.Client {
		t.Fatalf("client address %v", got)
	}
	if !bytes.Equal(b[24:36], nonce[:]) || b[36] != protoUDP || binary.BigEndian.Uint16(b[40:]) != 41641 || binary.BigEndian.Uint16(b[42:]) != 41641 {
		t.Fatalf("MAP payload % x", b[24:44])
	}
	if got := netip.AddrFrom16([16]byte(b[44:60])); got != netip.AddrFrom16(netip.IPv4Unspecified().As16()) {
		t.Fatalf("suggested external address %v, want ::ffff:0.0.0.0", got)
	}

	ext := netip.MustParseAddrPort("203.0.113.22:41641")
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
		want    pcpMapResponse
	}{
		{"success", pcpMapAnswer(b, 0, 3600, ext), false, pcpMapResponse{
			pcpResponse: pcpResponse{Opcode: pcpOpMap, Lifetime: 3600, Epoch: 1234},
			Nonce:       nonce, Protocol: protoUDP, Port: 41641, External: ext}},
		{"refused", pcpMapAnswer(b, 8, 30, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)), false, pcpMapResponse{
			pcpResponse: pcpResponse{Opcode: pcpOpMap, ResultCode: 8, Lifetime: 30, Epoch: 1234},
			Nonce:       nonce, Protocol: protoUDP, Port: 41641, External: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)}},
		{"with an option after", append(pcpMapAnswer(b, 0, 3600, ext), 0x12, 0, 0, 0), false, pcpMapResponse{
			pcpResponse: pcpResponse{Opcode: pcpOpMap, Lifetime: 3600, Epoch: 1234},
			Nonce:       nonce, Protocol: protoUDP, Port: 41641, External: ext}},
		{"own request echoed", b, true, pcpMapResponse{}},
		{"header only", pcpMapAnswer(b, 0, 3600, ext)[:pcpHeaderLen], true, pcpMapResponse{}},
		{"announce answer", func() []byte { a := pcpMapAnswer(b, 0, 0, ext); a[1] = pcpResponseBit | pcpOpAnnounce; return a }(), true, pcpMapResponse{}},
		{"NAT-PMP answer", []byte{0, 0x81, 0, 0, 0, 0, 0, 9, 0xa1, 0xa9, 0xa1, 0xa9, 0, 0, 0x1c, 0x20}, true, pcpMapResponse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePCPMapResponse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestPCPMapWaitsForItsAnswer: pcpMap skips answers that are not for its
// request (another nonce, garbage) and returns the one that is, or the
// refusal's result code by name.
func TestPCPMapWaitsForItsAnswer(t *testing.T) {
	tests := []struct {
		name    string
		result  uint8
		wantErr string
	}{
		{"success", pcpResultOK, ""},
		{"no resources", 8, "NO_RESOURCES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			ext := netip.MustParseAddrPort("203.0.113.22:50000")
			go func() {
				buf := make([]byte, 1500)
				n, from, err := srv.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				req := buf[:n]
				other := pcpMapAnswer(req, pcpResultOK, 60, ext)
				other[pcpHeaderLen] ^= 0xff // another mapping's nonce
				srv.WriteToUDPAddrPort(other, from)
				srv.WriteToUDPAddrPort([]byte("not PCP"), from)
				srv.WriteToUDPAddrPort(pcpMapAnswer(req, tt.result, 60, ext), from)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			server := srv.LocalAddr().(*net.UDPAddr).AddrPort()
			r, err := pcpMap(ctx, server, pcpMapRequest{Nonce: newPCPNonce(), Port: 41641, Suggest: 41641, Lifetime: 60})
			if tt.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErr)) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.External != ext || r.Lifetime != 60 {
				t.Fatalf("mapped %v for %ds, want %v for 60s", r.External, r.Lifetime, ext)
			}
		})
	}
}

func FuzzParsePCPMapResponse(f *testing.F) {
	req := appendPCPMap(nil, pcpMapRequest{Client: netip.MustParseAddr("192.168.2.10"), Nonce: newPCPNonce(), Port: 41641, Lifetime: 60})
	f.Add(pcpMapAnswer(req, 0, 60, netip.MustParseAddrPort("203.0.113.22:41641")))
	f.Add(pcpMapAnswer(req, 2, 0, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)))
	f.Add(req)
	f.Add([]byte{0, 0x81, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePCPMapResponse(b)
		if err != nil {
			return
		}
		if len(b) < pcpMapRespLen || b[0] != pcpVersion || b[1] != pcpResponseBit|pcpOpMap {
			t.Fatalf("accepted a non-MAP response of %d bytes: % x", len(b), b[:min(len(b), 4)])
		}
		if r.Port != binary.BigEndian.Uint16(b[pcpHeaderLen+16:]) || r.External.Port() != binary.BigEndian.Uint16(b[pcpHeaderLen+18:]) {
			t.Fatalf("ports %d, %v do not match the payload", r.Port, r.External)
		}
	})
}

package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"weft/internal/key"
)

func TestMessageRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	req := &RegisterRequest{AuthKey: "k", NodeKey: key.NewNode().Public(), Hostinfo: &Hostinfo{Hostname: "busan"}}
	if err := WriteMessage(&buf, MsgRegisterRequest, req); err != nil {
		t.Fatal(err)
	}
	if err := WriteMessage(&buf, MsgKeepAlive, nil); err != nil {
		t.Fatal(err)
	}
	typ, body, err := ReadMessage(&buf, MaxNodeMessage)
	if err != nil || typ != MsgRegisterRequest {
		t.Fatalf("ReadMessage = %v, %v", typ, err)
	}
	var got RegisterRequest
	if err := Decode(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.NodeKey != req.NodeKey || got.Hostinfo.Hostname != "busan" {
		t.Errorf("got %+v", got)
	}
	typ, body, err = ReadMessage(&buf, MaxNodeMessage)
	if err != nil || typ != MsgKeepAlive || len(body) != 0 {
		t.Fatalf("keepalive = %v, %q, %v", typ, body, err)
	}
}

func TestReadMessageRefuses(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"oversized", binary.BigEndian.AppendUint32([]byte{byte(MsgUpdate)}, MaxNodeMessage+1), ErrMessageTooLarge},
		{"unknown type", binary.BigEndian.AppendUint32([]byte{99}, 0), ErrBadMessage},
		{"zero type", binary.BigEndian.AppendUint32([]byte{0}, 0), ErrBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ReadMessage(bytes.NewReader(tt.in), MaxNodeMessage); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	nk := key.NewNode().Public()
	tooMany := make([]netip.AddrPort, maxEndpoints+1)
	for i := range tooMany {
		tooMany[i] = netip.MustParseAddrPort("192.0.2.1:1")
	}
	tests := []struct {
		name string
		v    interface{ Validate() error }
		ok   bool
	}{
		{"register ok", &RegisterRequest{NodeKey: nk}, true},
		{"register no key", &RegisterRequest{}, false},
		{"register long hostname", &RegisterRequest{NodeKey: nk, Hostinfo: &Hostinfo{Hostname: string(make([]byte, 300))}}, false},
		{"map ok", &MapRequest{NodeKey: nk, Endpoints: tooMany[:2]}, true},
		{"map too many endpoints", &MapRequest{NodeKey: nk, Endpoints: tooMany}, false},
		{"map zero port", &MapRequest{NodeKey: nk, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")}}, false},
		{"update ok", &Update{HomeRegion: -1}, true},
		{"update bad region", &Update{HomeRegion: -2}, false},
		{"map routes ok", &MapRequest{NodeKey: nk, AdvertisedRoutes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("192.168.1.0/24")}}, true},
		{"map route host bits", &MapRequest{NodeKey: nk, AdvertisedRoutes: []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}}, false},
		{"update routes empty", &Update{HomeRegion: -1, AdvertisedRoutes: &[]netip.Prefix{}}, true},
		{"update route invalid", &Update{HomeRegion: -1, AdvertisedRoutes: &[]netip.Prefix{{}}}, false},
		{"update health samples", &Update{HomeRegion: -1, HealthSamples: []HealthSample{{Time: time.Unix(1, 0), Metrics: map[string]float64{"peer_rtt_ms:busan": 29}, Facts: map[string]string{"public_addr": "203.0.113.21:41641"}}}}, true},
		{"update health sample without time", &Update{HomeRegion: -1, HealthSamples: []HealthSample{{Metrics: map[string]float64{"udp": 1}}}}, false},
		{"update health metric name too long", &Update{HomeRegion: -1, HealthSamples: []HealthSample{{Time: time.Unix(1, 0), Metrics: map[string]float64{string(make([]byte, 200)): 1}}}}, false},
		{"update too many health samples", &Update{HomeRegion: -1, HealthSamples: make([]HealthSample, MaxHealthSamples+1)}, false},
		// The server refuses what the node refuses (tailnet.CheckRoute).
		{"map route overlaps tailnet", &MapRequest{NodeKey: nk, AdvertisedRoutes: []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24")}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadMessage) {
				t.Errorf("error %v does not wrap ErrBadMessage", err)
			}
		})
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add(AppendMessage(nil, MsgKeepAlive, nil))
	f.Add(AppendMessage(nil, MsgUpdate, []byte(`{"home_region":1}`)))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, body, err := ReadMessage(bytes.NewReader(b), MaxNodeMessage)
		if err != nil {
			return
		}
		if len(body) > MaxNodeMessage || typ == 0 || typ > maxMsgType {
			t.Fatalf("accepted %v with %d bytes", typ, len(body))
		}
	})
}

// FuzzDecodeNodeMessages runs every message a node can send through Decode:
// it must never panic, and anything it accepts must validate again after a
// re-encode.
func FuzzDecodeNodeMessages(f *testing.F) {
	f.Add([]byte(`{"node_key":"nodekey:` + "0000000000000000000000000000000000000000000000000000000000000001" + `"}`))
	f.Add([]byte(`{"endpoints":["192.0.2.1:41641"],"home_region":1}`))
	f.Add([]byte(`{"hostinfo":{"hostname":"x","net_info":{"region_latency_ms":{"1":3}}}}`))
	f.Add([]byte(`{"home_region":-1,"advertised_routes":["0.0.0.0/0","::/0","10.1.0.0/16"]}`))
	f.Add([]byte(`{"home_region":-1,"health_samples":[{"time":"2026-12-01T00:00:00Z","metrics":{"peer_rtt_ms:busan":29.5},"facts":{"public_addr":"203.0.113.21:41641"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []interface{ Validate() error }{&RegisterRequest{}, &MapRequest{}, &Update{}, &LogoutRequest{}} {
			if Decode(b, v) != nil {
				continue
			}
			var buf bytes.Buffer
			if err := WriteMessage(&buf, MsgUpdate, v); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if err := v.Validate(); err != nil {
				t.Fatalf("accepted message fails validation: %v", err)
			}
		}
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"weft/internal/netcheck"
	"weft/internal/netcheck/netchecktest"
	"weft/internal/stunserver"
	"weft/internal/wire"
)

// loopbackRelayMap runs two STUN servers on loopback and returns a relay
// map with one region for each.
func loopbackRelayMap(t *testing.T) *wire.RelayMap {
	t.Helper()
	rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{}}
	for _, id := range []int{1, 2} {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &stunserver.Server{}
		done := make(chan struct{})
		go func() { defer close(done); s.Serve(context.Background(), pc) }()
		t.Cleanup(func() { s.Close(); <-done })
		rm.Regions[id] = &wire.RelayRegion{ID: id, Code: []string{"", "home", "far"}[id], Nodes: []*wire.RelayNode{{
			Name: "n", RegionID: id, Host: "127.0.0.1", STUNPort: pc.LocalAddr().(*net.UDPAddr).Port, InsecureHTTP: true,
		}}}
	}
	return rm
}

func checkLoopbackReport(t *testing.T, out []byte) {
	t.Helper()
	r, _, err := netchecktest.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	ap, err := netip.ParseAddrPort(r.GlobalV4)
	if err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("global_v4 %q, want 127.0.0.1:port", r.GlobalV4)
	}
	if !r.UDP || r.MappingVariesByDestIP == nil || *r.MappingVariesByDestIP {
		t.Fatalf("udp %v mapping_varies %v, want true and false", r.UDP, r.MappingVariesByDestIP)
	}
	if _, ok := r.RegionLatencyMS["1"]; !ok || len(r.RegionLatencyMS) != 2 || r.PreferredRegion == 0 {
		t.Fatalf("region_latency_ms %v preferred %d", r.RegionLatencyMS, r.PreferredRegion)
	}
}

func TestNetcheckRelayMapFile(t *testing.T) {
	b, _ := json.Marshal(loopbackRelayMap(t))
	path := filepath.Join(t.TempDir(), "relaymap.json")
	// Comments are allowed in the file.
	if err := os.WriteFile(path, append([]byte("// lab relays\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"netcheck", "--json", "--portmap=false", "--relay-map", path}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	checkLoopbackReport(t, out.Bytes())
}

func TestNetcheckServer(t *testing.T) {
	rm := loopbackRelayMap(t)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/relaymap" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(rm)
	}))
	defer hs.Close()
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"netcheck", "--json", "--portmap=false", "--server", hs.URL + "/"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	checkLoopbackReport(t, out.Bytes())
}

func TestNetcheckUsage(t *testing.T) {
	nosock := filepath.Join(t.TempDir(), "weft.sock")
	empty := filepath.Join(t.TempDir(), "empty.json")
	os.WriteFile(empty, []byte(`{"regions":{}}`), 0o644)
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no daemon and no relay map", []string{"--socket", nosock, "netcheck"}, 2, "pass --server URL (the control server) or --relay-map FILE"},
		{"both sources", []string{"netcheck", "--relay-map", "x", "--server", "http://x"}, 2, "not both"},
		{"bad timeout", []string{"netcheck", "--relay-map", "x", "--timeout", "0s"}, 2, "--timeout"},
		{"missing file", []string{"netcheck", "--relay-map", filepath.Join(t.TempDir(), "nope.json")}, 1, "no such file"},
		{"empty map", []string{"netcheck", "--relay-map", empty}, 1, "no regions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(t.Context(), tt.args, &out, &errb); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.code, errb.String())
			}
			if !strings.Contains(errb.String(), tt.wantErr) {
				t.Fatalf("stderr %q lacks %q", errb.String(), tt.wantErr)
			}
		})
	}
}

func TestWriteNetcheckReport(t *testing.T) {
	f := false
	rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1:  {ID: 1, Code: "home"},
		2:  {ID: 2, Code: "tokyo"},
		10: {ID: 10, Name: ""},
	}}
	tests := []struct {
		name    string
		r       *netcheck.Report
		portmap bool
		want    string
	}{
		{
			name: "easy NAT",
			r: &netcheck.Report{
				UDP: true, IPv4: true,
				GlobalV4:              netip.MustParseAddrPort("203.0.113.21:41641"),
				MappingVariesByDestIP: &f,
				PreferredRegion:       1,
				RegionLatency:         map[int]time.Duration{1: 24800 * time.Microsecond, 2: 130 * time.Millisecond},
				RegionLatencyVia:      map[int]string{1: "stun", 2: "http"},
			},
			portmap: true,
			want: "Report:\n" +
				"\t* UDP: true\n" +
				"\t* IPv4: yes, 203.0.113.21:41641\n" +
				"\t* IPv6: no\n" +
				"\t* Mapping varies by destination IP: false (easy NAT)\n" +
				"\t* Port mapping: UPnP no, NAT-PMP no, PCP no\n" +
				"\t* Nearest relay: home (1)\n" +
				"\t* Relay latency:\n" +
				"\t\t- home      (1):  24.8ms\n" +
				"\t\t- tokyo     (2):  130.0ms (HTTP)\n" +
				"\t\t- region 10 (10): no answer\n",
		},
		{
			name: "UDP blocked, nothing answers",
			r:    &netcheck.Report{},
			want: "Report:\n" +
				"\t* UDP: false (blocked or no STUN server answered: peers will be reached through a relay)\n" +
				"\t* IPv4: no\n" +
				"\t* IPv6: no\n" +
				"\t* Mapping varies by destination IP: unknown (needs answers from two STUN servers)\n" +
				"\t* Port mapping: not probed\n" +
				"\t* Nearest relay: none answered\n" +
				"\t* Relay latency:\n" +
				"\t\t- home      (1):  no answer\n" +
				"\t\t- tokyo     (2):  no answer\n" +
				"\t\t- region 10 (10): no answer\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeNetcheckReport(&b, tt.r, rm, tt.portmap); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Fatalf("got:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestSTUNCmd(t *testing.T) {
	// Find a free port, then let the command listen on it.
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close()

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() { done <- run(ctx, []string{"stun", "--listen", addr.String()}, &bytes.Buffer{}, &errb) }()

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	buf := make([]byte, 1500)
	var answered bool
	// The command may not be listening yet: resend until it answers.
	for range 100 {
		c.WriteToUDPAddrPort(req.Raw, addr)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err == nil && netcheck.IsSTUN(buf[:n]) {
			answered = true
			break
		}
	}
	cancel()
	code := <-done
	if !answered {
		t.Fatalf("weft stun never answered; stderr: %s", errb.String())
	}
	if code != 0 {
		t.Fatalf("weft stun exited %d after interrupt; stderr: %s", code, errb.String())
	}
}

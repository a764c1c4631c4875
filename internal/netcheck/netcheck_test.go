package netcheck

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"weft/internal/netutil"
	"weft/internal/portmap"
	"weft/internal/stunserver"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// startSTUN runs a real STUN server on a loopback port for the test.
func startSTUN(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stunserver.Server{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(context.Background(), pc)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startLyingSTUN runs a STUN responder that always claims the client's
// public address is mapped, the way each server of a hard NAT's victim
// sees a different mapping.
func startLyingSTUN(t *testing.T, mapped netip.AddrPort) netip.AddrPort {
	t.Helper()
	return serveLoopbackUDP(t, func(pc *net.UDPConn, pkt []byte, from netip.AddrPort) {
		var req stun.Message
		req.Raw = append([]byte(nil), pkt...)
		if req.Decode() != nil {
			return
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())})
		if err != nil {
			return
		}
		pc.WriteToUDPAddrPort(resp.Raw, from)
	})
}

// silentUDP returns a loopback UDP port that reads and never answers, like
// a STUN server behind a firewall that drops UDP.
func silentUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	return serveLoopbackUDP(t, func(*net.UDPConn, []byte, netip.AddrPort) {})
}

// serveLoopbackUDP hands every datagram to a loopback UDP port to handle
// until the test ends, and returns the port's address.
func serveLoopbackUDP(t *testing.T, handle func(pc *net.UDPConn, pkt []byte, from netip.AddrPort)) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	tstest.ServeUDP(pc, func(pkt []byte, from netip.AddrPort) { handle(pc, pkt, from) })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// region builds a one-node region whose STUN server is at stunAddr and
// whose HTTP port (plain HTTP) is httpPort.
func region(id int, stunAddr netip.AddrPort, httpPort int) *wire.RelayRegion {
	host := "127.0.0.1"
	stunPort := -1
	if stunAddr.IsValid() {
		host = stunAddr.Addr().String()
		stunPort = int(stunAddr.Port())
	}
	return &wire.RelayRegion{
		ID:   id,
		Code: "r" + strconv.Itoa(id),
		Nodes: []*wire.RelayNode{{
			Name: "r" + strconv.Itoa(id) + "a", RegionID: id, Host: host,
			Port: httpPort, STUNPort: stunPort, InsecureHTTP: true,
		}},
	}
}

func relayMap(regions ...*wire.RelayRegion) *wire.RelayMap {
	rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{}}
	for _, r := range regions {
		rm.Regions[r.ID] = r
	}
	return rm
}

func ptr[T any](v T) *T { return &v }

// checkNoLeak fails the test if goroutines started after before are
// still running once they have had a moment to wind down.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	var n int
	for range 200 {
		if n = runtime.NumGoroutine(); n <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines left running (had %d):\n%s", n, before, buf[:runtime.Stack(buf, true)])
}

func TestGetReportSTUN(t *testing.T) {
	a, b := startSTUN(t), startSTUN(t)
	before := runtime.NumGoroutine()
	c := &Client{}
	r, err := c.GetReport(t.Context(), relayMap(region(1, a, 0), region(2, b, 0)))
	if err != nil {
		t.Fatal(err)
	}
	checkNoLeak(t, before)
	if !r.UDP || !r.IPv4 || r.IPv6 {
		t.Fatalf("UDP=%v IPv4=%v IPv6=%v, want true true false", r.UDP, r.IPv4, r.IPv6)
	}
	if r.GlobalV4.Addr() != netip.MustParseAddr("127.0.0.1") || r.GlobalV4.Port() == 0 {
		t.Fatalf("GlobalV4 = %v, want 127.0.0.1:<the client's port>", r.GlobalV4)
	}
	if r.MappingVariesByDestIP == nil || *r.MappingVariesByDestIP {
		t.Fatalf("MappingVariesByDestIP = %v, want known false", r.MappingVariesByDestIP)
	}
	for _, id := range []int{1, 2} {
		if _, ok := r.RegionLatency[id]; !ok || r.RegionLatencyVia[id] != "stun" {
			t.Fatalf("region %d: latency %v via %q, want a STUN latency", id, r.RegionLatency[id], r.RegionLatencyVia[id])
		}
	}
	if r.PreferredRegion != 1 && r.PreferredRegion != 2 {
		t.Fatalf("PreferredRegion = %d", r.PreferredRegion)
	}
}

func TestMappingVaries(t *testing.T) {
	tests := []struct {
		name    string
		servers []netip.AddrPort // what each server claims to see
		want    *bool
	}{
		{"two servers agree", []netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.1:41641"), netip.MustParseAddrPort("198.51.100.1:41641"),
		}, ptr(false)},
		{"two servers disagree on port", []netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.1:41641"), netip.MustParseAddrPort("198.51.100.1:50000"),
		}, ptr(true)},
		{"two servers disagree on IP", []netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.1:41641"), netip.MustParseAddrPort("198.51.100.2:41641"),
		}, ptr(true)},
		{"one server: unknown", []netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.1:41641"),
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var regions []*wire.RelayRegion
			for i, m := range tt.servers {
				regions = append(regions, region(i+1, startLyingSTUN(t, m), 0))
			}
			r, err := (&Client{}).GetReport(t.Context(), relayMap(regions...))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == nil && r.MappingVariesByDestIP != nil:
				t.Fatalf("MappingVariesByDestIP = %v, want unknown", *r.MappingVariesByDestIP)
			case tt.want != nil && r.MappingVariesByDestIP == nil:
				t.Fatalf("MappingVariesByDestIP unknown, want %v", *tt.want)
			case tt.want != nil && *r.MappingVariesByDestIP != *tt.want:
				t.Fatalf("MappingVariesByDestIP = %v, want %v", *r.MappingVariesByDestIP, *tt.want)
			}
			if r.HardNAT() != (tt.want != nil && *tt.want) {
				t.Fatalf("HardNAT() = %v", r.HardNAT())
			}
			if !slices.Contains(tt.servers, r.GlobalV4) {
				t.Fatalf("GlobalV4 = %v, want one of %v", r.GlobalV4, tt.servers)
			}
		})
	}
}

// TestGetReportOverCallerSocket runs the Client the way the node's UDP
// conn does: through the caller's socket, so the mapping reported is that
// socket's.
func TestGetReportOverCallerSocket(t *testing.T) {
	a, b := startSTUN(t), startSTUN(t)
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{
		SendPacket: func(pkt []byte, dst netip.AddrPort) error {
			_, err := sock.WriteToUDPAddrPort(pkt, dst)
			return err
		},
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 1500)
		for {
			n, src, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if IsSTUN(buf[:n]) {
				c.ReceiveSTUNPacket(buf[:n], src)
			}
		}
	}()
	defer func() {
		sock.Close()
		<-readerDone
	}()
	r, err := c.GetReport(t.Context(), relayMap(region(1, a, 0), region(2, b, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if want := sock.LocalAddr().(*net.UDPAddr).AddrPort(); r.GlobalV4 != want {
		t.Fatalf("GlobalV4 = %v, want the caller's socket %v", r.GlobalV4, want)
	}
	if r.HardNAT() || r.MappingVariesByDestIP == nil {
		t.Fatalf("MappingVariesByDestIP = %v, want known false", r.MappingVariesByDestIP)
	}
}

func TestGetReportUDPBlocked(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer hs.Close()
	httpPort := hs.Listener.Addr().(*net.TCPAddr).Port

	// The probes' connections go through the caller's dialer (a daemon
	// marks them so an exit node does not carry them).
	var dials atomic.Int32
	var d net.Dialer
	c := &Client{STUNTimeout: 300 * time.Millisecond, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}}
	rm := relayMap(region(1, silentUDP(t), httpPort), region(2, netip.AddrPort{}, httpPort))
	before := runtime.NumGoroutine()
	r, err := c.GetReport(t.Context(), rm)
	if err != nil {
		t.Fatal(err)
	}
	hs.CloseClientConnections() // the server's side of the checks' connections
	checkNoLeak(t, before)
	if r.UDP || r.IPv4 || r.GlobalV4.IsValid() {
		t.Fatalf("UDP=%v IPv4=%v GlobalV4=%v, want nothing over UDP", r.UDP, r.IPv4, r.GlobalV4)
	}
	if r.MappingVariesByDestIP != nil {
		t.Fatalf("MappingVariesByDestIP = %v, want unknown", *r.MappingVariesByDestIP)
	}
	for _, id := range []int{1, 2} {
		if r.RegionLatency[id] <= 0 || r.RegionLatencyVia[id] != "http" {
			t.Fatalf("region %d: latency %v via %q, want an HTTP latency", id, r.RegionLatency[id], r.RegionLatencyVia[id])
		}
	}
	if r.PreferredRegion == 0 {
		t.Fatal("no preferred region from HTTP latencies")
	}
	if n := dials.Load(); n < 2 {
		t.Fatalf("the Client's DialContext opened %d connections, want one per region", n)
	}
}

// TestGetReportHonoursTimeout points the Client at servers that never
// answer (a silent STUN port, an HTTP server that accepts and hangs): the
// report must come back at its deadline instead of waiting for them. The
// TCP handshake with the hanging server does complete, and counts as an
// HTTP latency; nothing else may be in the report.
func TestGetReportHonoursTimeout(t *testing.T) {
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hs.Close()
	defer close(release)
	httpPort := hs.Listener.Addr().(*net.TCPAddr).Port
	rm := relayMap(region(1, silentUDP(t), httpPort))

	t.Run("client timeout", func(t *testing.T) {
		c := &Client{Timeout: 300 * time.Millisecond, STUNTimeout: 100 * time.Millisecond}
		r := getReportOrHang(t, context.Background(), c, rm)
		if r.UDP || r.RegionLatencyVia[1] == "stun" {
			t.Fatalf("report %+v, want no STUN answer", r)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		c := &Client{Timeout: time.Hour, STUNTimeout: time.Hour}
		r := getReportOrHang(t, ctx, c, rm)
		if r.UDP || r.RegionLatencyVia[1] == "stun" {
			t.Fatalf("report %+v, want no STUN answer", r)
		}
	})
}

// getReportOrHang fails the test if GetReport is still running long after
// every deadline it was given.
func getReportOrHang(t *testing.T, ctx context.Context, c *Client, rm *wire.RelayMap) *Report {
	t.Helper()
	type res struct {
		r   *Report
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := c.GetReport(ctx, rm)
		ch <- res{r, err}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatal(x.err)
		}
		return x.r
	case <-time.After(30 * time.Second):
		t.Fatal("GetReport ignored its deadline")
		return nil
	}
}

type fakePortMapper struct{ res portmap.Result }

func (f fakePortMapper) Probe(ctx context.Context) (portmap.Result, error) { return f.res, nil }

func TestGetReportPortMapping(t *testing.T) {
	c := &Client{PortMapper: fakePortMapper{portmap.Result{UPnP: true, PCP: true}}}
	r, err := c.GetReport(t.Context(), relayMap(region(1, startSTUN(t), 0)))
	if err != nil {
		t.Fatal(err)
	}
	if !r.UPnP || r.PMP || !r.PCP {
		t.Fatalf("UPnP=%v PMP=%v PCP=%v, want true false true", r.UPnP, r.PMP, r.PCP)
	}
}

// stuckPortMapper ignores its context until released, like a probe stuck
// in a library call.
type stuckPortMapper struct{ release chan struct{} }

func (s stuckPortMapper) Probe(ctx context.Context) (portmap.Result, error) {
	<-s.release
	return portmap.Result{UPnP: true, PMP: true, PCP: true}, nil
}

func TestGetReportDoesNotWaitForStuckPortMapper(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := &Client{Timeout: 500 * time.Millisecond, PortMapper: stuckPortMapper{release}}
	r := getReportOrHang(t, context.Background(), c, relayMap(region(1, startSTUN(t), 0)))
	if r.UPnP || r.PMP || r.PCP {
		t.Fatalf("UPnP=%v PMP=%v PCP=%v from a probe that never finished", r.UPnP, r.PMP, r.PCP)
	}
	if !r.UDP {
		t.Fatal("the stuck probe cost the STUN results")
	}
}

func TestGetReportNoRelayMap(t *testing.T) {
	for _, rm := range []*wire.RelayMap{nil, {}} {
		if _, err := (&Client{}).GetReport(t.Context(), rm); !errors.Is(err, ErrNoRelayMap) {
			t.Fatalf("GetReport(%v) error = %v, want ErrNoRelayMap", rm, err)
		}
	}
}

func TestReportJSON(t *testing.T) {
	r := &Report{
		UDP: true, IPv4: true,
		GlobalV4:              netip.MustParseAddrPort("203.0.113.21:41641"),
		MappingVariesByDestIP: ptr(false),
		PreferredRegion:       1,
		RegionLatencyMS:       map[int]float64{1: 24.8},
		RegionLatencyVia:      map[int]string{1: "stun"},
		RegionLatency:         map[int]time.Duration{1: 24800 * time.Microsecond},
		PMP:                   true,
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"udp": true, "ipv4": true, "ipv6": false,
		"global_v4": "203.0.113.21:41641", "global_v6": "",
		"mapping_varies_by_dest_ip": false,
		"preferred_region":          float64(1),
		"region_latency_ms":         map[string]any{"1": 24.8},
		"region_latency_via":        map[string]any{"1": "stun"},
		"upnp":                      false, "pmp": true, "pcp": false,
	}
	if len(m) != len(want) {
		t.Fatalf("JSON has %d fields, want %d: %s", len(m), len(want), b)
	}
	for k, v := range want {
		got, _ := json.Marshal(m[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("%s = %s, want %s", k, got, exp)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.GlobalV4 != r.GlobalV4 || back.HardNAT() || back.MappingVariesByDestIP == nil {
		t.Fatalf("round trip: %+v", back)
	}

	// Unknown mapping is null, not false.
	r.MappingVariesByDestIP = nil
	b, _ = json.Marshal(r)
	json.Unmarshal(b, &m)
	if v, ok := m["mapping_varies_by_dest_ip"]; !ok || v != nil {
		t.Fatalf("unknown mapping encoded as %v (present %v), want null", v, ok)
	}
}

func TestNetInfo(t *testing.T) {
	r := &Report{
		UDP: true, MappingVariesByDestIP: ptr(true), PreferredRegion: 2,
		RegionLatency: map[int]time.Duration{1: 30 * time.Millisecond, 2: 4200 * time.Microsecond},
	}
	ni := r.NetInfo()
	if !ni.UDP || !ni.MappingVariesByDestIP || ni.PreferredRegion != 2 {
		t.Fatalf("NetInfo = %+v", ni)
	}
	if ni.RegionLatencyMS[1] != 30 || ni.RegionLatencyMS[2] != 5 {
		t.Fatalf("RegionLatencyMS = %v, want 1:30 2:5 (rounded up)", ni.RegionLatencyMS)
	}
}

func TestPreferredRegion(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	tests := []struct {
		name    string
		latency map[int]time.Duration
		prev    int
		want    int
	}{
		{"empty", nil, 0, 0},
		{"empty keeps nothing", nil, 3, 0},
		{"lowest wins", map[int]time.Duration{1: ms(50), 2: ms(20), 3: ms(80)}, 0, 2},
		{"tie goes to lower ID", map[int]time.Duration{4: ms(20), 2: ms(20)}, 0, 2},
		{"prev kept within jitter", map[int]time.Duration{1: ms(22), 2: ms(20)}, 1, 1},
		{"prev kept within half again", map[int]time.Duration{1: ms(140), 2: ms(100)}, 1, 1},
		{"prev dropped when much worse", map[int]time.Duration{1: ms(200), 2: ms(100)}, 1, 2},
		{"prev gone", map[int]time.Duration{2: ms(100)}, 1, 2},
		{"small absolute gap kept", map[int]time.Duration{1: ms(9), 2: ms(1)}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PreferredRegion(tt.latency, tt.prev); got != tt.want {
				t.Fatalf("PreferredRegion = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestReceiveSTUNPacketIgnoresStrangers(t *testing.T) {
	c := &Client{}
	answers := make(chan stunAnswer, 4)
	server := netip.MustParseAddrPort("127.0.0.1:3478")
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	c.inflight = map[txID]*stunTx{req.TransactionID: {target: target{region: 1, addr: server}, sent: time.Now(), answers: answers}}

	reply := func(id txID, mapped string) []byte {
		ap := netip.MustParseAddrPort(mapped)
		m, _ := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())})
		return m.Raw
	}
	other, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	c.ReceiveSTUNPacket(reply(other.TransactionID, "198.51.100.1:1"), server)                               // unknown transaction
	c.ReceiveSTUNPacket(reply(req.TransactionID, "198.51.100.1:2"), netip.MustParseAddrPort("127.0.0.1:9")) // wrong source
	c.ReceiveSTUNPacket([]byte("garbage"), server)
	c.ReceiveSTUNPacket(req.Raw, server) // a request, not an answer
	select {
	case a := <-answers:
		t.Fatalf("accepted %+v", a)
	default:
	}
	c.ReceiveSTUNPacket(reply(req.TransactionID, "198.51.100.1:3"), netip.MustParseAddrPort("[::ffff:127.0.0.1]:3478"))
	select {
	case a := <-answers:
		if a.mapped != netip.MustParseAddrPort("198.51.100.1:3") {
			t.Fatalf("mapped %v", a.mapped)
		}
	default:
		t.Fatal("the real answer (from a v4-mapped source) was ignored")
	}
	// A duplicate of an answered request is ignored.
	c.ReceiveSTUNPacket(reply(req.TransactionID, "198.51.100.1:4"), server)
	if len(answers) != 0 {
		t.Fatal("duplicate answer accepted")
	}
}

func FuzzReceiveSTUNPacket(f *testing.F) {
	m, _ := stun.Build(stun.TransactionID, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(198, 51, 100, 1), Port: 41641})
	f.Add(m.Raw)
	f.Add([]byte{1, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		c := &Client{}
		answers := make(chan stunAnswer, 1)
		server := netip.MustParseAddrPort("127.0.0.1:3478")
		var id txID
		if len(pkt) >= 20 {
			copy(id[:], pkt[8:20])
		}
		c.inflight = map[txID]*stunTx{id: {target: target{addr: server}, sent: time.Now(), answers: answers}}
		c.ReceiveSTUNPacket(pkt, server)
		select {
		case a := <-answers:
			if !a.mapped.IsValid() || a.mapped.Port() == 0 {
				t.Fatalf("accepted invalid mapping %v", a.mapped)
			}
		default:
		}
	})
}

// TestReportJSONRoundTrip: a report read back from JSON (as the CLI reads
// the daemon's) has its full-precision latencies again.
func TestReportJSONRoundTrip(t *testing.T) {
	varies := true
	r := &Report{UDP: true, MappingVariesByDestIP: &varies, PreferredRegion: 2,
		RegionLatency: map[int]time.Duration{}, RegionLatencyMS: map[int]float64{}, RegionLatencyVia: map[int]string{}}
	r.setLatency(2, 12300*time.Microsecond, "stun")
	r.setLatency(5, 80*time.Millisecond, "http")
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.RegionLatency[2] != 12300*time.Microsecond || got.RegionLatency[5] != 80*time.Millisecond || len(got.RegionLatency) != 2 {
		t.Errorf("RegionLatency after a round trip: %v", got.RegionLatency)
	}
	if !got.HardNAT() || got.PreferredRegion != 2 || got.RegionLatencyVia[5] != "http" {
		t.Errorf("report after a round trip: %+v", got)
	}
	if err := json.Unmarshal([]byte(`{"region_latency_ms":{"1":"x"}}`), &got); err == nil {
		t.Error("a bad latency was accepted")
	}
}

// TestResolveTargetsRelayAddrs: a relay node's ipv4 and ipv6 are probed
// beside an IP-literal host, and stand in for resolving a DNS name.
func TestResolveTargetsRelayAddrs(t *testing.T) {
	v4, v6 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8::10")
	for _, tc := range []struct {
		name string
		node wire.RelayNode
		want []string
	}{
		{"IPv4 literal alone", wire.RelayNode{Host: "203.0.113.10"}, []string{"203.0.113.10:3478"}},
		{"IPv4 literal and ipv6", wire.RelayNode{Host: "203.0.113.10", IPv6: v6}, []string{"203.0.113.10:3478", "[2001:db8::10]:3478"}},
		{"IPv6 literal and ipv4", wire.RelayNode{Host: "2001:db8::10", IPv4: v4, STUNPort: 3479}, []string{"[2001:db8::10]:3479", "203.0.113.10:3479"}},
		{"literal repeated in ipv4", wire.RelayNode{Host: "203.0.113.10", IPv4: v4}, []string{"203.0.113.10:3478"}},
		// .invalid never resolves (RFC 6761): the addresses must come
		// from the map alone.
		{"name with both families given", wire.RelayNode{Host: "relay.invalid", IPv4: v4, IPv6: v6}, []string{"203.0.113.10:3478", "[2001:db8::10]:3478"}},
		{"no STUN", wire.RelayNode{Host: "203.0.113.10", IPv6: v6, STUNPort: -1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.node
			n.Name, n.RegionID = "1a", 1
			rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{1: {ID: 1, Nodes: []*wire.RelayNode{&n}}}}
			var got []string
			for _, tg := range resolveTargets(t.Context(), slog.New(slog.DiscardHandler), rm) {
				got = append(got, tg.addr.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("targets = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestGetReportHTTPSPrivateCA measures, with UDP blocked, a region whose
// relay answers HTTPS with a certificate from a private CA. Without the
// CA in the Client's TLSConfig the relay is not trusted and the region
// gets no latency (its TCP connect time must not count: the node could
// not use that relay); with the trust netutil.TrustTLS builds from the
// CA's PEM (the node's --ca-file), it is measured over HTTP.
func TestGetReportHTTPSPrivateCA(t *testing.T) {
	ca := tstest.NewCA(t, "netcheck test CA")
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	}))
	hs.TLS = ca.ServerTLS(t, "127.0.0.1")
	hs.StartTLS()
	defer hs.Close()
	reg := region(1, silentUDP(t), hs.Listener.Addr().(*net.TCPAddr).Port)
	reg.Nodes[0].InsecureHTTP = false
	trusted, err := netutil.TrustTLS(ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		tc   *tls.Config
		want bool
	}{
		{"system roots alone", nil, false},
		{"with the private CA", trusted, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			nc := &Client{STUNTimeout: 200 * time.Millisecond, TLSConfig: c.tc}
			r, err := nc.GetReport(t.Context(), relayMap(reg))
			if err != nil {
				t.Fatal(err)
			}
			_, got := r.RegionLatency[1]
			if got != c.want || (got && r.RegionLatencyVia[1] != "http") {
				t.Fatalf("region 1 measured: %v via %q, want measured %v over http", got, r.RegionLatencyVia[1], c.want)
			}
		})
	}
	// SetTLSConfig on a Client in use: the next report trusts the CA.
	nc := &Client{STUNTimeout: 200 * time.Millisecond}
	if r, _ := nc.GetReport(t.Context(), relayMap(reg)); r.RegionLatency[1] != 0 {
		t.Fatal("measured an untrusted relay")
	}
	nc.SetTLSConfig(trusted)
	if r, _ := nc.GetReport(t.Context(), relayMap(reg)); r.RegionLatency[1] == 0 {
		t.Fatal("not measured after SetTLSConfig with the CA")
	}
}

// TestHTTPLatencyOtherFamily measures, over HTTP, a relay whose host is an
// IPv4 address this node cannot use and whose map entry gives an ipv6
// that works: refused at once (an IPv6-only node) or black-holed (SYNs
// vanish: the fake dial blocks until its context ends). Either way the
// latency comes over the ipv6, within the probe's time and without
// waiting for the IPv4 dial to end.
func TestHTTPLatencyOtherFamily(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	}))
	defer hs.Close()
	port := hs.Listener.Addr().(*net.TCPAddr).Port
	n := &wire.RelayNode{Name: "1a", RegionID: 1, Host: "203.0.113.10", IPv6: netip.MustParseAddr("2001:db8::10"), Port: port, InsecureHTTP: true}
	v4, v6 := net.JoinHostPort(n.Host, strconv.Itoa(port)), net.JoinHostPort(n.IPv6.String(), strconv.Itoa(port))
	for _, blackhole := range []bool{false, true} {
		t.Run(fmt.Sprintf("blackhole=%v", blackhole), func(t *testing.T) {
			var mu sync.Mutex
			var tried []string
			var d net.Dialer
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				tried = append(tried, addr)
				mu.Unlock()
				switch {
				case addr == v6:
					return d.DialContext(ctx, network, hs.Listener.Addr().String())
				case addr == v4 && blackhole:
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return nil, errors.New("network is unreachable")
			}
			// A probe that waited for the black-holed dial would end
			// with this deadline, unmeasured.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			lat, err := httpLatency(ctx, dial, nil, n)
			if err != nil || lat <= 0 {
				t.Fatalf("latency %v, %v; want one measured over %s", lat, err, v6)
			}
			if ctx.Err() != nil {
				t.Fatal("measured only after the probe's deadline")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(tried) == 0 || tried[0] != v4 || !slices.Contains(tried, v6) {
				t.Errorf("dialed %v; want %s first, then %s", tried, v4, v6)
			}
		})
	}
}

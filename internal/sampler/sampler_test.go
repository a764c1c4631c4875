package sampler

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/samples"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// fakeSource is a node with two online peers (busan direct, pc on the
// relay) and one offline (seoul).
type fakeSource struct {
	serverURL string
	rx        int64
	network   *localapi.NetworkSummary
}

func (f *fakeSource) Status(context.Context) (*localapi.Status, error) {
	peer := func(name string, online bool, rx int64, addr string) *localapi.PeerStatus {
		return &localapi.PeerStatus{Node: &wire.Node{Name: name, Online: online, Addresses: []netip.Prefix{netip.MustParsePrefix(addr)}},
			RxBytes: rx, TxBytes: 2 * rx}
	}
	return &localapi.Status{BackendState: localapi.StateRunning, ServerURL: f.serverURL,
		Peers: []*localapi.PeerStatus{peer("busan", true, f.rx, "100.64.0.1/32"), peer("pc", true, 0, "100.64.0.3/32"), peer("seoul", false, 0, "100.64.0.4/32")}}, nil
}

func (f *fakeSource) Ping(_ context.Context, req localapi.PingRequest) (*localapi.PingResult, error) {
	switch req.Peer {
	case "busan":
		return &localapi.PingResult{Name: "busan", RTTMS: 51.5, Path: localapi.Path{Kind: localapi.PathDirect}}, nil
	case "pc":
		return &localapi.PingResult{Name: "pc", RTTMS: 80, Path: localapi.Path{Kind: localapi.PathRelay}}, nil
	}
	return nil, errors.New("timeout")
}

func (f *fakeSource) Network() *localapi.NetworkSummary { return f.network }

func TestTake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tstest.ServeConns(ln, nil)
	src := &fakeSource{serverURL: "http://" + ln.Addr().String(), rx: 1000}
	store, err := samples.Open(filepath.Join(t.TempDir(), "samples.log"), samples.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The tunnel ping dials busan's tailnet address; here a dialer that
	// answers at once for busan and refuses pc.
	tunnelDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch addr {
		case "100.64.0.1:41643":
			return net.Dial("tcp", ln.Addr().String())
		case "100.64.0.3:41643":
			return nil, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
		}
		return nil, errors.New("unreachable")
	}
	s, err := New(Config{Source: src, Store: store, Interval: time.Second, Probes: []string{"127.0.0.1:1"}, TunnelPort: 41643, TunnelDial: tunnelDial,
		HostFacts: func() map[string]float64 { return map[string]float64{"load1": 0.5} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// No network report yet: no udp, no relay metric, no address.
	first := s.Take(ctx)
	want := []string{"load1", "peer_direct:busan", "peer_direct:pc", "peer_rtt_ms:busan", "peer_rtt_ms:pc",
		"peer_rx_bytes:busan", "peer_rx_bytes:pc", "peer_tunnel_rtt_ms:busan", "peer_tunnel_rtt_ms:pc", "peer_tx_bytes:busan", "peer_tx_bytes:pc",
		"probe_rtt_ms:" + ln.Addr().String()}
	if got := slices.Sorted(maps.Keys(first.Metrics)); !slices.Equal(got, want) {
		t.Fatalf("metrics %v\nwant %v", got, want)
	}
	if m := first.Metrics; m["peer_rtt_ms:busan"] != 51.5 || m["peer_direct:busan"] != 1 || m["peer_direct:pc"] != 0 || m["peer_rx_bytes:busan"] != 1000 {
		t.Errorf("first sample: %v", m)
	}
	if len(first.Facts) != 0 {
		t.Errorf("facts without a network report: %v", first.Facts)
	}

	src.rx = 1500
	src.network = &localapi.NetworkSummary{UDP: true, PublicAddr: "203.0.113.21:41641", RelayRTTMS: map[string]float64{"home": 3.5}}
	second := s.Take(ctx)
	if m := second.Metrics; m["peer_rx_bytes:busan"] != 500 || m["peer_tx_bytes:busan"] != 1000 || m["udp"] != 1 || m["relay_rtt_ms:home"] != 3.5 {
		t.Errorf("second sample: %v", m)
	}
	if second.Facts["public_addr"] != "203.0.113.21:41641" {
		t.Errorf("facts %v", second.Facts)
	}
	// The node went down and up: counters start again.
	src.rx = 100
	if m := s.Take(ctx).Metrics; m["peer_rx_bytes:busan"] != 100 {
		t.Errorf("after a counter reset: %v", m["peer_rx_bytes:busan"])
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"http://ctrl.example:8080": "ctrl.example:8080",
		"https://ctrl.example":     "ctrl.example:443",
		"http://203.0.113.10/":     "203.0.113.10:80",
		"http://[2001:db8::1]:80":  "[2001:db8::1]:80",
		"":                         "",
		"::":                       "",
	} {
		if got := hostPort(in); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReport(t *testing.T) {
	var sent [][]wire.HealthSample
	up := false
	s, err := New(Config{Source: &fakeSource{}, Store: &samples.Store{}, Report: func(ss []wire.HealthSample) error {
		if !up {
			return errors.New("not connected")
		}
		sent = append(sent, slices.Clone(ss))
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	smp := func(i int) wire.HealthSample {
		return wire.HealthSample{Time: time.Unix(int64(i), 0), Metrics: map[string]float64{"udp": 1}}
	}
	// The first sample goes at once; the server is not there: it waits,
	// and so do the next ones, at most maxPending.
	for i := range maxPending + 5 {
		s.report(smp(i))
	}
	if len(sent) != 0 || len(s.pending) != maxPending || !s.pending[0].Time.Equal(time.Unix(5, 0)) {
		t.Fatalf("sent %d batches, %d pending from %v", len(sent), len(s.pending), s.pending[0].Time)
	}
	up = true
	s.report(smp(9999))
	if len(sent) != 1 || len(sent[0]) != maxPending || len(s.pending) != 0 {
		t.Fatalf("after reconnecting: %d batches, pending %d", len(sent), len(s.pending))
	}
	// Then in batches of reportBatch.
	for i := range reportBatch - 1 {
		s.report(smp(i))
	}
	if len(sent) != 1 {
		t.Fatalf("a batch went out before it was full")
	}
	s.report(smp(100))
	if len(sent) != 2 || len(sent[1]) != reportBatch {
		t.Fatalf("batches %d, last %d long", len(sent), len(sent[len(sent)-1]))
	}
}

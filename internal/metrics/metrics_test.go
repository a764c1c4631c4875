package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/wire"
)

func TestNodeAndServerMetrics(t *testing.T) {
	st := &localapi.Status{BackendState: localapi.StateRunning, ExitNode: "busan", Health: []string{"UDP is blocked"},
		Buffers:  &localapi.BufferStats{Max: 128, InFlightOut: 7, InFlightIn: 3, WaitsOut: 11, WaitsIn: 5, ForgottenIn: 2, RelayedDrops: 9, RelaySendDrops: 4, IdleReleases: 2},
		Netstack: &localapi.NetstackStats{LinkDrops: 0, LinkWaits: 6, TCPRetransmits: 12},
		Peers: []*localapi.PeerStatus{
			{Node: &wire.Node{Name: "busan", Online: true}, Path: localapi.Path{Kind: localapi.PathDirect}, RxBytes: 1000, TxBytes: 2000},
			{Node: &wire.Node{Name: "pc"}, Path: localapi.Path{Kind: localapi.PathNone}},
		}}
	smp := &wire.HealthSample{Time: time.Unix(1764547200, 0), Metrics: map[string]float64{
		"peer_rtt_ms:busan": 29.5, "udp": 1, "battery_pct": 85, "peer_rx_bytes:busan": 10,
	}}
	node := &Node{Status: func(context.Context) (*localapi.Status, error) { return st, nil }, Latest: func() *wire.HealthSample { return smp }}
	server := &Server{Nodes: func(context.Context) ([]ServerNode, error) {
		return []ServerNode{{ID: 1, Online: true}, {ID: 2}, {ID: 3, Online: true}}, nil
	}}
	reg, err := NewRegistry(node, server)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Serve(ctx, ln, reg, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := string(b)
	for _, want := range []string{
		"weft_node_running 1",
		"weft_node_health_problems 1",
		`weft_peer_online{peer="busan"} 1`,
		`weft_peer_online{peer="pc"} 0`,
		`weft_peer_direct{peer="busan"} 1`,
		`weft_peer_rx_bytes_total{peer="busan"} 1000`,
		`weft_peer_tx_bytes_total{peer="busan"} 2000`,
		`weft_exit_node_in_use{exit_node="busan"} 1`,
		"weft_dataplane_in_flight_max 128",
		`weft_dataplane_in_flight_packets{dir="out"} 7`,
		`weft_dataplane_in_flight_packets{dir="in"} 3`,
		`weft_dataplane_backpressure_waits_total{dir="out"} 11`,
		`weft_dataplane_backpressure_waits_total{dir="in"} 5`,
		`weft_dataplane_forgotten_packets_total{dir="in"} 2`,
		"weft_dataplane_relayed_drops_total 9",
		"weft_dataplane_relay_send_drops_total 4",
		"weft_netstack_link_drops_total 0",
		"weft_netstack_link_waits_total 6",
		"weft_netstack_tcp_retransmits_total 12",
		"weft_dataplane_idle_releases_total 2",
		`weft_health_peer_rtt_ms{target="busan"} 29.5`,
		"weft_health_udp 1",
		"weft_health_battery_pct 85",
		"weft_health_sample_timestamp_seconds 1.7645472e+09",
		"weft_server_nodes 3",
		"weft_server_nodes_online 2",
		"go_goroutines",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, absent := range []string{`weft_peer_direct{peer="pc"}`, "weft_health_peer_rx_bytes"} {
		if strings.Contains(out, absent) {
			t.Errorf("metrics have %q", absent)
		}
	}
	if t.Failed() {
		t.Logf("scraped:\n%s", out)
	}
}

func TestServerMetricsError(t *testing.T) {
	reg, err := NewRegistry(&Server{Nodes: func(context.Context) ([]ServerNode, error) { return nil, errors.New("store closed") }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "store closed") {
		t.Errorf("a failing store gave %v", err)
	}
}

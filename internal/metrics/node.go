package metrics

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"weft/internal/localapi"
	"weft/internal/samples"
	"weft/internal/wire"
)

// Node collects the node daemon's metrics when scraped: from its status
// (state, peers, paths, byte counters, health problems, exit node) and
// from its latest health sample (round trips, UDP, host facts).
type Node struct {
	// Status reads the daemon's status. Required.
	Status func(ctx context.Context) (*localapi.Status, error)
	// Latest returns the newest health sample, or nil before the first;
	// nil leaves the sample's metrics out.
	Latest func() *wire.HealthSample
}

var _ prometheus.Collector = (*Node)(nil)

var (
	nodeUp       = prometheus.NewDesc("weft_node_running", "1 while the node is up and connected to the control server (backend state Running).", nil, nil)
	nodeProblems = prometheus.NewDesc("weft_node_health_problems", "Health problems `weft status` shows now.", nil, nil)
	peerOnline   = prometheus.NewDesc("weft_peer_online", "1 while the control server says the peer is online.", []string{"peer"}, nil)
	peerDirect   = prometheus.NewDesc("weft_peer_direct", "1 while packets to the peer take a direct path, 0 on the relay; absent while idle.", []string{"peer"}, nil)
	peerRx       = prometheus.NewDesc("weft_peer_rx_bytes_total", "WireGuard bytes received from the peer since the node went up.", []string{"peer"}, nil)
	peerTx       = prometheus.NewDesc("weft_peer_tx_bytes_total", "WireGuard bytes sent to the peer since the node went up.", []string{"peer"}, nil)
	exitInUse    = prometheus.NewDesc("weft_exit_node_in_use", "1 for the exit node internet traffic goes through now.", []string{"exit_node"}, nil)
	inFlight     = prometheus.NewDesc("weft_dataplane_in_flight_packets", "Packets the WireGuard device holds now, by direction (out: TUN to peers, in: peers to TUN).", []string{"dir"}, nil)
	inFlightMax  = prometheus.NewDesc("weft_dataplane_in_flight_max", "How many packets each direction may hold before its readers wait.", nil, nil)
	bpWaits      = prometheus.NewDesc("weft_dataplane_backpressure_waits_total", "Reads of the TUN (out) or the socket (in) that waited for room in the in-flight bound; the kernel's queue drops what does not fit meanwhile.", []string{"dir"}, nil)
	forgotten    = prometheus.NewDesc("weft_dataplane_forgotten_packets_total", "Packets the WireGuard device dropped inside, taken out of the in-flight count after a stall.", []string{"dir"}, nil)
	relayedDrops = prometheus.NewDesc("weft_dataplane_relayed_drops_total", "Packets from the relay dropped because the WireGuard device did not take them fast enough.", nil, nil)
	relaySend    = prometheus.NewDesc("weft_dataplane_relay_send_drops_total", "Packets for the relay dropped because a region's send queue (512) was full.", nil, nil)
	linkDrops    = prometheus.NewDesc("weft_netstack_link_drops_total", "Userspace mode: packets the stack sent that never reached WireGuard (0 while the node runs; its sender waits for room instead).", nil, nil)
	linkWaits    = prometheus.NewDesc("weft_netstack_link_waits_total", "Userspace mode: sends of the stack that found the queue toward WireGuard full and waited.", nil, nil)
	nsRetrans    = prometheus.NewDesc("weft_netstack_tcp_retransmits_total", "Userspace mode: TCP segments the stack sent again, all connections.", nil, nil)
	idleReleases = prometheus.NewDesc("weft_dataplane_idle_releases_total", "Times the data plane gave the memory its readers touched back to the system after a burst.", nil, nil)
	sampleTime   = prometheus.NewDesc("weft_health_sample_timestamp_seconds", "When the latest health sample was taken.", nil, nil)
)

// Describe sends nothing: the sample's metrics vary with the peers, so
// Node is an unchecked collector.
func (n *Node) Describe(chan<- *prometheus.Desc) {}

// Collect reads the status and the latest sample.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if st, err := n.Status(ctx); err == nil {
		collectStatus(ch, st)
	}
	if n.Latest != nil {
		if s := n.Latest(); s != nil {
			collectSample(ch, s)
		}
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func collectStatus(ch chan<- prometheus.Metric, st *localapi.Status) {
	gauge(ch, nodeUp, b2f(st.BackendState == localapi.StateRunning))
	gauge(ch, nodeProblems, float64(len(st.Health)))
	for _, p := range st.Peers {
		if p == nil || p.Node == nil {
			continue
		}
		gauge(ch, peerOnline, b2f(p.Online), p.Name)
		if p.Path.Kind != localapi.PathNone {
			gauge(ch, peerDirect, b2f(p.Path.Kind == localapi.PathDirect), p.Name)
		}
		ch <- prometheus.MustNewConstMetric(peerRx, prometheus.CounterValue, float64(p.RxBytes), p.Name)
		ch <- prometheus.MustNewConstMetric(peerTx, prometheus.CounterValue, float64(p.TxBytes), p.Name)
	}
	if st.ExitNode != "" {
		gauge(ch, exitInUse, 1, st.ExitNode)
	}
	if b := st.Buffers; b != nil {
		gauge(ch, inFlightMax, float64(b.Max))
		gauge(ch, inFlight, float64(b.InFlightOut), "out")
		gauge(ch, inFlight, float64(b.InFlightIn), "in")
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		counter(bpWaits, b.WaitsOut, "out")
		counter(bpWaits, b.WaitsIn, "in")
		counter(forgotten, b.ForgottenOut, "out")
		counter(forgotten, b.ForgottenIn, "in")
		counter(relayedDrops, b.RelayedDrops)
		counter(relaySend, b.RelaySendDrops)
		counter(idleReleases, b.IdleReleases)
	}
	if ns := st.Netstack; ns != nil {
		ch <- prometheus.MustNewConstMetric(linkDrops, prometheus.CounterValue, float64(ns.LinkDrops))
		ch <- prometheus.MustNewConstMetric(linkWaits, prometheus.CounterValue, float64(ns.LinkWaits))
		ch <- prometheus.MustNewConstMetric(nsRetrans, prometheus.CounterValue, float64(ns.TCPRetransmits))
	}
}

// sampleMetric turns a sample's metric name into a Prometheus name and
// its label: "peer_rtt_ms:busan" is weft_health_peer_rtt_ms{target="busan"}.
// Byte counts since the previous sample are left out: the counters above
// say the same better.
func collectSample(ch chan<- prometheus.Metric, s *wire.HealthSample) {
	gauge(ch, sampleTime, float64(s.Time.UnixNano())/1e9)
	for name, v := range s.Metrics {
		base, target, _ := strings.Cut(name, ":")
		if strings.HasSuffix(base, "_bytes") && target != "" {
			continue
		}
		help := "Health sample metric " + base
		if u := samples.Unit(name); u != "" {
			help += " (" + u + ")"
		}
		help += "; docs/health.md."
		var labels []string
		var values []string
		if target != "" {
			labels, values = []string{"target"}, []string{target}
		}
		d := prometheus.NewDesc("weft_health_"+base, help, labels, nil)
		gauge(ch, d, v, values...)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

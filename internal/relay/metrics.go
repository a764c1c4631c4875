package relay

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exposes the server's counters to reg. The counters live in
// atomics on the Server (so Stats works without Prometheus) and the
// collectors read them when scraped, so the packet path pays nothing extra.
func (s *Server) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "relay", Name: name, Help: help,
		}, func() float64 { return float64(f()) })
	}
	drops := func(reason string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "weft", Subsystem: "relay", Name: "drops_total",
			Help:        "Packets the relay dropped, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(f()) })
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "weft", Subsystem: "relay", Name: "clients",
			Help: "Node connections to this relay now.",
		}, func() float64 { return float64(s.Stats().Clients) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "weft", Subsystem: "relay", Name: "mesh_peers",
			Help: "Other relays of the region watching this one now.",
		}, func() float64 { return float64(s.Stats().MeshPeers) }),
		counter("packets_forwarded_total", "Packets queued to a receiver or mesh peer.", s.packetsForwarded.Load),
		counter("bytes_forwarded_total", "Payload bytes of forwarded packets.", s.bytesForwarded.Load),
		counter("handshakes_refused_total", "Connections refused at the handshake.", s.refused.Load),
		drops("queue_full", s.dropsQueueFull.Load),
		drops("relay_full", s.dropsRelayFull.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "weft", Subsystem: "relay", Name: "queued_bytes",
			Help: "Bytes queued for clients now (bounded by the relay's total).",
		}, func() float64 { return float64(s.queued.Load()) }),
		drops("unknown_dest", s.dropsUnknown.Load),
		drops("write", s.dropsWrite.Load),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("relay: registering metrics: %w", err)
		}
	}
	return nil
}

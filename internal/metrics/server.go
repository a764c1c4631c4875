package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"weft/internal/wire"
)

// ServerNode is what the server collector needs of a node.
type ServerNode struct {
	ID     wire.NodeID
	Online bool
}

// Server collects the control server's metrics when scraped.
type Server struct {
	// Nodes lists the tailnet's nodes and whether each is connected.
	// Required.
	Nodes func(ctx context.Context) ([]ServerNode, error)
}

var _ prometheus.Collector = (*Server)(nil)

var (
	serverNodes  = prometheus.NewDesc("weft_server_nodes", "Nodes registered with the control server.", nil, nil)
	serverOnline = prometheus.NewDesc("weft_server_nodes_online", "Nodes with a live map stream now.", nil, nil)
)

// Describe sends the server's descriptors.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	ch <- serverNodes
	ch <- serverOnline
}

// Collect lists the nodes.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ns, err := s.Nodes(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(serverNodes, err)
		return
	}
	online := 0
	for _, n := range ns {
		if n.Online {
			online++
		}
	}
	gauge(ch, serverNodes, float64(len(ns)))
	gauge(ch, serverOnline, float64(online))
}

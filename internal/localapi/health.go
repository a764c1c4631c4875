package localapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"weft/internal/wire"
)

// HealthStats is the seed's table of a node's health samples: one row per
// metric. Its JSON form is what `weft health stats --json` prints
// (docs/health.md).
type HealthStats struct {
	Metrics []wire.MetricSummary `json:"metrics"`
}

// HealthStatsRequest selects the samples HealthStats summarises.
type HealthStatsRequest struct {
	// Since keeps samples no older than this; zero keeps all.
	Since time.Duration
	// Peer keeps only this peer's metrics; empty keeps all.
	Peer string
}

// StatsKeeper is implemented by a Backend that keeps health samples;
// Handler serves GET /health-stats only for such a Backend.
type StatsKeeper interface {
	HealthStats(ctx context.Context, req HealthStatsRequest) (*HealthStats, error)
}

// NetworkSummary is the data plane's last view of the network, for health
// samples.
type NetworkSummary struct {
	// UDP is whether UDP reached the STUN servers.
	UDP bool `json:"udp"`
	// PublicAddr is the public IPv4 address:port STUN saw; empty when
	// unknown.
	PublicAddr string `json:"public_addr,omitempty"`
	// RelayRTTMS is the round trip to each relay region that answered,
	// by region code, in milliseconds.
	RelayRTTMS map[string]float64 `json:"relay_rtt_ms,omitempty"`
}

func handleHealthStats(mux *http.ServeMux, b Backend, reply func(http.ResponseWriter, any, error)) {
	sk, ok := b.(StatsKeeper)
	if !ok {
		return
	}
	mux.HandleFunc("GET /health-stats", func(w http.ResponseWriter, r *http.Request) {
		var req HealthStatsRequest
		if s := r.URL.Query().Get("since"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				reply(w, nil, fmt.Errorf("bad since %q: want a duration such as 30h", s))
				return
			}
			req.Since = d
		}
		req.Peer = r.URL.Query().Get("peer")
		st, err := sk.HealthStats(r.Context(), req)
		if st != nil && st.Metrics == nil {
			st.Metrics = []wire.MetricSummary{}
		}
		reply(w, st, err)
	})
}

// HealthStats asks the daemon for the table of its health samples.
func (c *Client) HealthStats(ctx context.Context, req HealthStatsRequest) (*HealthStats, error) {
	q := url.Values{}
	if req.Since > 0 {
		q.Set("since", req.Since.String())
	}
	if req.Peer != "" {
		q.Set("peer", req.Peer)
	}
	path := "/health-stats"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var st HealthStats
	if err := c.do(ctx, http.MethodGet, path, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

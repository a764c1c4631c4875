package wire

import "time"

// HealthSample is one round of a node's health measurements (docs/health.md):
// numbers by metric name and, beside them, facts that are not numbers (the
// public address). A metric the node could not measure is absent, never
// zero: a laptop without a battery has no battery_pct. Per-peer and
// per-region metrics carry the peer or region after a colon, as in
// "peer_rtt_ms:busan".
type HealthSample struct {
	Time    time.Time          `json:"time"`
	Metrics map[string]float64 `json:"metrics"`
	Facts   map[string]string  `json:"facts,omitempty"`
}

// MetricSummary is one row of the seed's table: a metric's mean, minimum,
// median, 95th percentile and maximum over some samples, and how many
// samples had it.
type MetricSummary struct {
	Name    string  `json:"name"`
	Unit    string  `json:"unit"`
	Mean    float64 `json:"mean"`
	Min     float64 `json:"min"`
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"`
}

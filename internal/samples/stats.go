// Package samples keeps a node's health samples (wire.HealthSample) and
// summarises them the way the seed's owner did by hand: for each metric,
// mean, min, p50, p95, max and the number of samples.
//
// Store is the append-only file in the daemon's state dir (store.go);
// Summarize computes the table (stats.go); Units names each metric's unit.
// docs/health.md describes the metrics and the file.
package samples

import (
	"math"
	"slices"
	"strings"
	"time"

	"weft/internal/wire"
)

// Units maps a metric's base name (before any ":peer") to its unit.
var units = map[string]string{
	"peer_rtt_ms":        "ms",
	"peer_tunnel_rtt_ms": "ms",
	"peer_direct":        "ratio",
	"peer_rx_bytes":      "bytes",
	"peer_tx_bytes":      "bytes",
	"relay_rtt_ms":       "ms",
	"probe_rtt_ms":       "ms",
	"udp":                "ratio",
	"battery_pct":        "%",
	"on_ac":              "ratio",
	"wifi_signal_dbm":    "dBm",
	"wifi_quality":       "%",
	"load1":              "",
	"mem_used_pct":       "%",
	"mem_avail_bytes":    "bytes",
	"uptime_s":           "s",
}

// Unit is the unit of the metric name ("peer_rtt_ms:busan" is in ms); ""
// for a unitless or unknown metric.
func Unit(name string) string {
	base, _, _ := strings.Cut(name, ":")
	return units[base]
}

// Filter selects samples and metrics for Summarize.
type Filter struct {
	// Since leaves out samples taken before it; zero keeps all.
	Since time.Time
	// Peer keeps only the metrics of this peer (those named
	// "peer_...:Peer"); empty keeps every metric.
	Peer string
}

func (f Filter) keep(name string) bool {
	if f.Peer == "" {
		return true
	}
	base, who, ok := strings.Cut(name, ":")
	return ok && who == f.Peer && strings.HasPrefix(base, "peer_")
}

// Summarize returns one row per metric that appears in the samples kept by
// f, sorted by name. A metric absent from a sample does not count in that
// sample; NaN and infinite values are left out.
func Summarize(ss []wire.HealthSample, f Filter) []wire.MetricSummary {
	values := map[string][]float64{}
	for _, s := range ss {
		if !f.Since.IsZero() && s.Time.Before(f.Since) {
			continue
		}
		for name, v := range s.Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) || !f.keep(name) {
				continue
			}
			values[name] = append(values[name], v)
		}
	}
	out := make([]wire.MetricSummary, 0, len(values))
	for name, vs := range values {
		out = append(out, summarize(name, vs))
	}
	slices.SortFunc(out, func(a, b wire.MetricSummary) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// summarize computes one row; vs is not empty and is sorted in place.
func summarize(name string, vs []float64) wire.MetricSummary {
	slices.Sort(vs)
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	return wire.MetricSummary{
		Name:    name,
		Unit:    Unit(name),
		Mean:    sum / float64(len(vs)),
		Min:     vs[0],
		P50:     Percentile(vs, 50),
		P95:     Percentile(vs, 95),
		Max:     vs[len(vs)-1],
		Samples: len(vs),
	}
}

// Percentile is the p-th percentile (0-100) of sorted, interpolated
// linearly between the two nearest ranks: the definition spreadsheets and
// most statistics tools use by default, so a table made from exported
// samples by hand agrees with weft's. It is NaN for no values.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n == 1 || p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	h := p / 100 * float64(n-1)
	lo := int(math.Floor(h))
	if lo+1 >= n {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

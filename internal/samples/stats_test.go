package samples

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"weft/internal/wire"
)

// refPercentile is a reference computation written apart from
// Percentile: the weighted average of the two order statistics around
// rank 1 + p/100*(n-1), counted from 1.
func refPercentile(vs []float64, p float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	rank := 1 + p/100*float64(len(s)-1)
	below := math.Floor(rank)
	above := math.Ceil(rank)
	w := rank - below
	return s[int(below)-1]*(1-w) + s[int(above)-1]*w
}

func TestPercentileKnownValues(t *testing.T) {
	// The expected values are what spreadsheets (PERCENTILE.INC) and
	// numpy's default give for the same data.
	tests := []struct {
		name     string
		vs       []float64
		p50, p95 float64
	}{
		{"one", []float64{7}, 7, 7},
		{"two", []float64{1, 3}, 2, 2.9},
		{"four", []float64{1, 2, 3, 4}, 2.5, 3.85},
		{"seed RTT", []float64{28, 29, 29, 30, 90}, 29, 78},
		{"all equal", []float64{85, 85, 85}, 85, 85},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := slices.Clone(tt.vs)
			slices.Sort(s)
			if got := Percentile(s, 50); math.Abs(got-tt.p50) > 1e-9 {
				t.Errorf("p50 = %v, want %v", got, tt.p50)
			}
			if got := Percentile(s, 95); math.Abs(got-tt.p95) > 1e-9 {
				t.Errorf("p95 = %v, want %v", got, tt.p95)
			}
		})
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("the percentile of nothing is not NaN")
	}
}

func TestPercentileAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n < 400; n += 7 {
		vs := make([]float64, n)
		for i := range vs {
			vs[i] = r.NormFloat64()*10 + 30
		}
		s := slices.Clone(vs)
		slices.Sort(s)
		for _, p := range []float64{0, 1, 25, 50, 90, 95, 99, 100} {
			if got, want := Percentile(s, p), refPercentile(vs, p); math.Abs(got-want) > 1e-9 {
				t.Fatalf("n=%d p=%v: %v, reference %v", n, p, got, want)
			}
		}
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rtts := []float64{28, 29, 29, 30, 90}
	var ss []wire.HealthSample
	for i, v := range rtts {
		m := map[string]float64{"peer_rtt_ms:busan": v, "probe_rtt_ms:8.8.8.8:53": v / 2, "relay_rtt_ms:busan": 5}
		if i == 2 {
			m["battery_pct"] = 84 // only one sample has it
			m["peer_rtt_ms:pc"] = math.NaN()
		}
		ss = append(ss, wire.HealthSample{Time: t0.Add(time.Duration(i) * 5 * time.Minute), Metrics: m})
	}
	tests := []struct {
		name string
		f    Filter
		want []wire.MetricSummary
	}{
		{"all", Filter{}, []wire.MetricSummary{
			{Name: "battery_pct", Unit: "%", Mean: 84, Min: 84, P50: 84, P95: 84, Max: 84, Samples: 1},
			{Name: "peer_rtt_ms:busan", Unit: "ms", Mean: 41.2, Min: 28, P50: 29, P95: 78, Max: 90, Samples: 5},
			{Name: "probe_rtt_ms:8.8.8.8:53", Unit: "ms", Mean: 20.6, Min: 14, P50: 14.5, P95: 39, Max: 45, Samples: 5},
			{Name: "relay_rtt_ms:busan", Unit: "ms", Mean: 5, Min: 5, P50: 5, P95: 5, Max: 5, Samples: 5},
		}},
		{"one peer, not the relay region of the same name", Filter{Peer: "busan"}, []wire.MetricSummary{
			{Name: "peer_rtt_ms:busan", Unit: "ms", Mean: 41.2, Min: 28, P50: 29, P95: 78, Max: 90, Samples: 5},
		}},
		{"since", Filter{Since: t0.Add(14 * time.Minute), Peer: "busan"}, []wire.MetricSummary{
			{Name: "peer_rtt_ms:busan", Unit: "ms", Mean: 60, Min: 30, P50: 60, P95: 87, Max: 90, Samples: 2},
		}},
		{"nothing", Filter{Peer: "nobody"}, []wire.MetricSummary{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(ss, tt.f)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d rows %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Name != w.Name || g.Unit != w.Unit || g.Samples != w.Samples ||
					!near(g.Mean, w.Mean) || !near(g.Min, w.Min) || !near(g.P50, w.P50) || !near(g.P95, w.P95) || !near(g.Max, w.Max) {
					t.Errorf("row %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

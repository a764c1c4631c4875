package console

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"weft/internal/wire"
)

// HealthWindow is how far back the node page plots health samples by
// default (?since= on health.json changes it): a week of samples at the
// default 5-minute interval is about 2,000 points a line.
const HealthWindow = 7 * 24 * time.Hour

// healthPlots is health.json: the node's samples shaped for uPlot, one
// chart per concern, every series aligned on Times (Unix seconds). A
// value the node did not report at a time is null, which the chart draws
// as a gap.
type healthPlots struct {
	Times  []int64 `json:"times"`
	Charts []chart `json:"charts"`
}

type chart struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Unit   string   `json:"unit"`
	Steps  bool     `json:"steps,omitempty"` // drawn as steps: a state, not a measurement
	Series []series `json:"series"`
}

type series struct {
	Label  string     `json:"label"`
	Values []*float64 `json:"values"`
}

// nodeHealthJSON serves the node's health samples for the plots.
func (s *Server) nodeHealthJSON(w http.ResponseWriter, r *http.Request, sess session) {
	window := HealthWindow
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			http.Error(w, "since: want a duration such as 30h", http.StatusBadRequest)
			return
		}
		window = d
	}
	ss, err := s.api.NodeSamples(r.Context(), r.PathValue("node"), window)
	if err != nil {
		status, msg := apiError(err)
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(plotSamples(ss))
}

// plotSamples shapes samples (oldest first) into the node page's charts:
// round trips to peers and to relay regions, the path kind to each peer
// (1 direct, 0 relayed), throughput summed over peers, and battery.
// Charts without any value are left out.
func plotSamples(ss []wire.HealthSample) healthPlots {
	p := healthPlots{Times: make([]int64, len(ss)), Charts: []chart{}}
	for i, s := range ss {
		p.Times[i] = s.Time.Unix()
	}
	for _, c := range []chart{
		{ID: "peer-rtt", Title: "Round trip to peers", Unit: "ms", Series: perName(ss, "peer_rtt_ms")},
		{ID: "relay-rtt", Title: "Round trip to relay regions", Unit: "ms", Series: perName(ss, "relay_rtt_ms")},
		{ID: "path", Title: "Path to peers (1 direct, 0 relayed)", Steps: true, Series: perName(ss, "peer_direct")},
		{ID: "throughput", Title: "Throughput, all peers", Unit: "bytes/s", Series: throughput(ss)},
		{ID: "battery", Title: "Battery", Unit: "%", Series: perName(ss, "battery_pct")},
	} {
		if len(c.Series) > 0 {
			p.Charts = append(p.Charts, c)
		}
	}
	return p
}

// perName is one series per metric named base or base:WHO, labelled WHO
// (or base alone), sorted by label.
func perName(ss []wire.HealthSample, base string) []series {
	idx := map[string]int{}
	var out []series
	for i, s := range ss {
		for name, v := range s.Metrics {
			b, who, _ := strings.Cut(name, ":")
			if b != base {
				continue
			}
			if who == "" {
				who = base
			}
			j, ok := idx[who]
			if !ok {
				j = len(out)
				idx[who] = j
				out = append(out, series{Label: who, Values: make([]*float64, len(ss))})
			}
			out[j].Values[i] = &v
		}
	}
	slices.SortFunc(out, func(a, b series) int { return strings.Compare(a.Label, b.Label) })
	return out
}

// throughput is bytes per second received and sent, summed over peers:
// each sample's peer_rx_bytes and peer_tx_bytes count since the sample
// before, so the first sample has no rate.
func throughput(ss []wire.HealthSample) []series {
	rx := series{Label: "received", Values: make([]*float64, len(ss))}
	tx := series{Label: "sent", Values: make([]*float64, len(ss))}
	any := false
	for i := 1; i < len(ss); i++ {
		secs := ss[i].Time.Sub(ss[i-1].Time).Seconds()
		if secs <= 0 {
			continue
		}
		var in, out float64
		seen := false
		for name, v := range ss[i].Metrics {
			switch b, _, _ := strings.Cut(name, ":"); b {
			case "peer_rx_bytes":
				in += v
				seen = true
			case "peer_tx_bytes":
				out += v
				seen = true
			}
		}
		if seen {
			in, out = in/secs, out/secs
			rx.Values[i], tx.Values[i] = &in, &out
			any = true
		}
	}
	if !any {
		return nil
	}
	return []series{rx, tx}
}

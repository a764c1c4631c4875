package agent

import (
	"weft/internal/localapi"
	"weft/internal/node"
)

var _ node.NetworkEngine = (*Engine)(nil)

// Network implements node.NetworkEngine from the last network report:
// whether UDP works, the public address and each relay region's round
// trip, by region code.
func (e *Engine) Network() *localapi.NetworkSummary {
	e.mu.Lock()
	r, rm := e.report, e.relayMap
	e.mu.Unlock()
	if r == nil {
		return nil
	}
	ns := &localapi.NetworkSummary{UDP: r.UDP, RelayRTTMS: map[string]float64{}}
	if r.GlobalV4.IsValid() {
		ns.PublicAddr = r.GlobalV4.String()
	}
	for id, ms := range r.RegionLatencyMS {
		code := relayCode(rm, id)
		if code == "" {
			continue
		}
		ns.RelayRTTMS[code] = ms
	}
	return ns
}

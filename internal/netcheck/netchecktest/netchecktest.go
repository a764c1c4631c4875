// Package netchecktest reads the report of `weft netcheck --json` the way
// a script does: by the JSON field names docs/netcheck.md lists, not
// through the Go type that writes them, so that a test reading a renamed
// or retyped field fails.
package netchecktest

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Report is the JSON report as a script reads it.
type Report struct {
	UDP                   bool               `json:"udp"`
	GlobalV4              string             `json:"global_v4"`
	MappingVariesByDestIP *bool              `json:"mapping_varies_by_dest_ip"`
	PreferredRegion       int                `json:"preferred_region"`
	RegionLatencyMS       map[string]float64 `json:"region_latency_ms"`
	RegionLatencyVia      map[string]string  `json:"region_latency_via"`
	UPnP                  bool               `json:"upnp"`
	PMP                   bool               `json:"pmp"`
	PCP                   bool               `json:"pcp"`
}

// Parse decodes the report in out. What stands before the JSON object
// (log lines, when stderr is mixed in) is returned as before, not decoded.
func Parse(out []byte) (r Report, before []byte, err error) {
	if i := bytes.IndexByte(out, '{'); i > 0 {
		before, out = out[:i], out[i:]
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return Report{}, before, fmt.Errorf("weft netcheck output is not a JSON report: %w\n%s", err, out)
	}
	return r, before, nil
}

package control

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"weft/internal/wire"
)

// TestRelayMapServed: GET /relaymap answers with the configured relay map,
// which `weft netcheck --server` reads.
func TestRelayMapServed(t *testing.T) {
	rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{1: {ID: 1, Code: "home", Nodes: []*wire.RelayNode{{Name: "r1", RegionID: 1, Host: "203.0.113.10", Port: 8080}}}}}
	h := newHarness(t, func(c *Config) { c.RelayMap = rm })
	resp, err := http.Get(h.url + "/relaymap")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got wire.RelayMap
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /relaymap: %s, %v", resp.Status, err)
	}
	if r := got.Regions[1]; r == nil || r.Code != "home" || len(r.Nodes) != 1 || r.Nodes[0].Host != "203.0.113.10" {
		t.Errorf("relay map = %+v", got)
	}
}

// TestWhoamiServed: GET /whoami answers with the caller's address, which
// `weft exit-node check` asks by default.
func TestWhoamiServed(t *testing.T) {
	h := newHarness(t, nil)
	resp, err := http.Get(h.url + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != "127.0.0.1\n" {
		t.Fatalf("GET /whoami: %s %q %v, want 127.0.0.1", resp.Status, b, err)
	}
}

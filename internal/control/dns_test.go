package control

import (
	"context"
	"testing"

	"weft/internal/dnsconf"
)

// TestDNSSettingsReachNodes: the full map carries the tailnet's DNS
// configuration (the defaults before any is set), and a change reaches
// every connected node as a delta, without a reconnect.
func TestDNSSettingsReachNodes(t *testing.T) {
	h := newHarness(t, nil)
	nodes := h.streamingNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	for _, n := range nodes {
		r := n.next(t)
		if !r.Full || r.DNS == nil || r.DNS.Domain != dnsconf.DefaultDomain || !r.DNS.MagicDNS {
			t.Fatalf("full map DNS = %+v, want the defaults", r.DNS)
		}
	}
	src := []byte(`{"domain": "corp.internal", "nameservers": ["198.51.100.53"]}`)
	if err := h.st.SetDNSSettings(ctx, src); err != nil {
		t.Fatal(err)
	}
	h.srv.DNSChanged()
	for _, n := range []*simNode{a, b} {
		for {
			r := n.next(t)
			if r.DNS == nil {
				continue // an online patch of the other node
			}
			if r.DNS.Domain != "corp.internal" || len(r.DNS.Nameservers) != 1 || r.DNS.Nameservers[0].String() != "198.51.100.53:53" {
				t.Fatalf("delta DNS = %+v", r.DNS)
			}
			break
		}
	}
	// Telling the server again with nothing changed sends nothing.
	h.srv.DNSChanged()
	// A new stream's full map has the new settings.
	c := h.streamingNodes(t, "c")[0]
	if r := c.next(t); r.DNS == nil || r.DNS.Domain != "corp.internal" {
		t.Fatalf("new node's full map DNS = %+v", r.DNS)
	}
}

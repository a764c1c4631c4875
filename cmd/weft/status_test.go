package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/wire"
)

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	node := func(name, v4 string) *wire.Node {
		return &wire.Node{Name: name, OS: "linux", Online: true, Addresses: []netip.Prefix{netip.MustParsePrefix(v4 + "/32")}}
	}
	st := &localapi.Status{
		BackendState: localapi.StateRunning,
		Self:         node("mac", "100.64.0.2"),
		Peers: []*localapi.PeerStatus{
			{Node: node("busan", "100.64.0.1"), Path: localapi.Path{Kind: localapi.PathDirect, Endpoint: "203.0.113.21:41641"},
				RTTMS: 1.25, RxBytes: 1258291, TxBytes: 3565158, LastHandshake: now.Add(-12 * time.Second)},
			{Node: node("pc", "100.64.0.3"), Path: localapi.Path{Kind: localapi.PathRelay, RelayRegion: 1, RelayCode: "home"}, TxBytes: 148},
		},
		Health: []string{"UDP is blocked on this network: every peer is reached through the relay, which is slower"},
		Drops:  &localapi.Drops{IntoTunnel: 7, FromTunnel: 3},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	out := b.String()
	for _, want := range [][]string{
		{"100.64.0.2", "mac", "linux", "self"},
		{"100.64.0.1", "busan", "online", "direct 203.0.113.21:41641", "1.2ms", "1.2MB", "3.4MB", "12s ago"},
		{"100.64.0.3", "pc", "relay home", "148B", "never"},
		{"Health: UDP is blocked"},
		{"Refused: 7 packets from this node's other networks"},
		{"Refused: 3 packets from peers to destinations"},
	} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("no line with %q in:\n%s", want, out)
		}
	}
}

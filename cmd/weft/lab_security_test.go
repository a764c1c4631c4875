//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"weft/internal/localapi"
	"weft/internal/scenario"
)

// tailnetAddr4 is host's own IPv4 tailnet address, from its status.
func (l *exitLab) tailnetAddr4(host string) netip.Addr {
	l.t.Helper()
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli(host, "status", "--json")), &st); err != nil || st.Self == nil {
		l.t.Fatalf("%s's status: %v", host, err)
	}
	return netip.MustParseAddr(firstAddr(st.Self))
}

// TestLabExitNodeLANCannotEnterTailnet: nas, a plain host on the exit
// node's LAN, routes the tailnet (100.64.0.0/10) via busan's LAN address.
// mac uses busan as exit node, so busan's allowed IPs on mac cover every
// source address; still nas must not open a connection to mac, because
// busan lets into the tunnel from other interfaces only packets of
// connections a tailnet node opened. busan counts what it drops, in
// `weft status --json`, and mac's own traffic through busan still flows.
func TestLabExitNodeLANCannotEnterTailnet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	busanWAN, busanLAN := l.lab.Node("r-busan").WANAddr, l.lab.Node("busan").LANAddr

	l.admin("routes", "approve", "busan", "exit")
	err := scenario.WaitFor(ctx, 30*time.Second, "busan listed as exit node on mac", func() (bool, error) {
		out, err := l.tn.CLI(ctx, "mac", "exit-node", "list")
		return err == nil && strings.Contains(string(out), "busan"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l.cli("mac", "set", "--exit-node", "busan")
	l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan through the exit node")
	macTailnet := l.tailnetAddr4("mac")
	// mac reaches busan's LAN through the exit node: the way back
	// (nas → busan → tunnel) is a reply and must pass.
	l.awaitReach("mac", "nas", "mac reaches nas through the exit node")

	err = l.lab.Node("nas").Do(func() error {
		return netlink.RouteAdd(&netlink.Route{Dst: netipNet(netip.MustParsePrefix("100.64.0.0/10")), Gw: busanLAN.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
	before := l.lanDrops("busan")
	for range 3 {
		if src, err := l.reachAddr("nas", "mac", macTailnet); err == nil {
			t.Fatalf("nas, on busan's LAN, opened a connection to mac's tailnet address %v (mac saw it from %v)", macTailnet, src)
		}
	}
	if after := l.lanDrops("busan"); after <= before {
		t.Errorf("busan's status counts %d dropped LAN packets before and %d after nas's attempts; want more", before, after)
	}
	// mac's own flows through busan are untouched.
	if a, err := l.whoami("mac"); err != nil || a != busanWAN {
		t.Errorf("after nas's attempts web sees mac as %v (%v), want r-busan %v", a, err, busanWAN)
	}
	if _, err := l.reach("mac", "nas"); err != nil {
		t.Errorf("mac no longer reaches nas through the exit node: %v", err)
	}
}

// lanDrops is the count of packets host refused to let from another
// interface into the tunnel, as `weft status --json` reports it.
func (l *exitLab) lanDrops(host string) uint64 {
	l.t.Helper()
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli(host, "status", "--json")), &st); err != nil {
		l.t.Fatalf("%s's status: %v", host, err)
	}
	if st.Drops == nil {
		return 0
	}
	return st.Drops.IntoTunnel
}

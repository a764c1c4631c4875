//go:build linux

package agent_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/scenario"
)

// TestLabSubnetRouteCoversEndpoints: busan offers the lab's whole public
// range, 203.0.113.0/24, as a subnet route and mac accepts it. That range
// holds everything weft itself talks to: the control server, its relay
// and STUN (ctrl, 203.0.113.10) and busan's own direct endpoint (r-busan's
// WAN, 203.0.113.21). Accepted subnet routes live in weft's routing table
// behind the mark rule, so mac's own sockets still reach all of them over
// the physical network: a fresh daemon on mac (killed and started again,
// so nothing is left over from before the route) comes up, and its path
// to busan turns direct to 203.0.113.21; meanwhile web (203.0.113.80), a
// plain host in the subnet, sees mac's requests arrive from r-busan, so
// they do go through the subnet router.
func TestLabSubnetRouteCoversEndpoints(t *testing.T) {
	const subnet = "203.0.113.0/24"
	n := startNet(t, 3*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	busanWAN := n.lab.Node("r-busan").WANAddr

	for _, c := range [][]string{{"busan", "set", "--advertise-routes", subnet}, {"mac", "set", "--accept-routes"}} {
		if out, err := n.tn.CLI(n.ctx, c[0], c[1:]...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	if out, err := n.tn.Admin(n.ctx, "routes", "approve", "busan", subnet); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	n.awaitWhoami("mac", busanWAN, "web to see mac through busan, the subnet router")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)

	if err := n.tn.KillDaemon("mac"); err != nil {
		t.Fatal(err)
	}
	if err := n.tn.StartDaemon(n.ctx, "mac"); err != nil {
		t.Fatal(err)
	}
	n.awaitWhoami("mac", busanWAN, "web to see mac through busan after mac's daemon restarted")
	macAddr := addr4(n.peer("busan", "mac"))
	n.echo("busan", "mac", macAddr)
	p := n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if !strings.HasPrefix(p.Path.Endpoint, busanWAN.String()+":") {
		t.Errorf("mac's direct path to busan is %q, want r-busan's WAN %v (inside the accepted subnet)", p.Path.Endpoint, busanWAN)
	}
	n.echo("mac", "busan", addr4(n.peer("mac", "busan")))
	st, err := n.status("mac")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Health {
		if strings.Contains(h, "UDP is blocked") {
			t.Errorf("mac's health with STUN inside the accepted subnet: %q", h)
		}
	}
}

// whoami is the address web sees host's HTTP request come from.
func (n *labNet) whoami(host string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
	defer cancel()
	return scenario.Whoami(ctx, n.lab, host)
}

// awaitWhoami waits until web sees host as want.
func (n *labNet) awaitWhoami(host string, want netip.Addr, what string) {
	n.t.Helper()
	var last netip.Addr
	var lastErr error
	err := scenario.WaitFor(n.ctx, 30*time.Second, what, func() (bool, error) {
		last, lastErr = n.whoami(host)
		return lastErr == nil && last == want, nil
	})
	if err != nil {
		n.t.Fatalf("%v: web last saw %s as %v (err %v), want %v", err, host, last, lastErr, want)
	}
}

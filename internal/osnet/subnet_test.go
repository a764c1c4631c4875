//go:build linux

package osnet

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestSubnetRoutesInWeftTable: accepted subnet routes go into weft's table
// behind the mark rule, so unmarked traffic to them enters the TUN while
// weft's own marked sockets reach the same addresses over the physical
// network (a relay or a peer's endpoint inside an accepted subnet); the
// host's own routes (its LAN) still win over an accepted subnet, an exact
// duplicate of one is left out with a warning, and removing the routes
// puts routing back exactly as it was.
func TestSubnetRoutesInWeftTable(t *testing.T) {
	const (
		inSubnet4 = "198.51.100.7" // in the accepted 198.51.100.0/24
		inSubnet6 = "2001:db8::7"  // in the accepted 2001:db8::/64
		lanHost   = "192.168.50.9" // in the accepted 192.168.0.0/16, but on the LAN
		elsewhere = "203.0.113.9"  // in no accepted subnet
	)
	l := newLab(t, 1)
	h := l.handle(0)
	setupHostLAN(t, h)
	r := newRouter(t, Options{})
	base := baseConfig()
	if err := r.Apply(base); err != nil {
		t.Fatal(err)
	}
	before := routingDump(t, h)

	cfg := withSubnets(base, netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/64"),
		netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("192.168.50.0/24"))
	for range 2 { // the second Apply must change nothing
		if err := r.Apply(cfg); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	checks := []struct {
		dst  string
		mark uint32
		want string
	}{
		{inSubnet4, 0, DefaultTUNName},
		{inSubnet6, 0, DefaultTUNName},
		{inSubnet4, DefaultMark, "eth0"},
		{inSubnet6, DefaultMark, "eth0"},
		{lanHost, 0, "eth0"},
		{elsewhere, 0, "eth0"},
		{"100.64.0.9", 0, DefaultTUNName},
	}
	for _, c := range checks {
		if got := routeDev(t, h, c.dst, c.mark); got != c.want {
			t.Errorf("route to %s with mark %#x goes via %s, want %s", c.dst, c.mark, got, c.want)
		}
	}
	_, mainRoutes := linkState(t, h, DefaultTUNName)
	if want := normPrefixes(base.TailnetRoutes, true); !slices.Equal(mainRoutes, want) {
		t.Errorf("main-table routes on the TUN = %v, want only the tailnet's %v", mainRoutes, want)
	}
	warns := r.Warnings()
	if len(warns) != 1 || !strings.Contains(warns[0], "192.168.50.0/24") || !strings.Contains(warns[0], "local network wins") {
		t.Errorf("warnings = %q, want one about 192.168.50.0/24 shadowed by the LAN", warns)
	}
	if got := readSysctl(t, sysctlSrcValidMark); got != "1" {
		t.Errorf("src_valid_mark = %s with subnet routes, want 1", got)
	}

	// With an exit node beside them the subnets still go to the TUN, and
	// dropping the exit node keeps them.
	exit := cfg
	exit.ExitNode = true
	for _, c := range []Config{exit, cfg} {
		if err := r.Apply(c); err != nil {
			t.Fatal(err)
		}
		if got := routeDev(t, h, inSubnet4, 0); got != DefaultTUNName {
			t.Errorf("exit node %v: %s goes via %s, want the TUN", c.ExitNode, inSubnet4, got)
		}
		if got := routeDev(t, h, inSubnet4, DefaultMark); got != "eth0" {
			t.Errorf("exit node %v: marked %s goes via %s, want eth0", c.ExitNode, inSubnet4, got)
		}
	}

	if err := r.Apply(base); err != nil {
		t.Fatal(err)
	}
	if got := routingDump(t, h); !slices.Equal(got, before) {
		t.Errorf("routing after removing the subnet routes differs:\n got %q\nwant %q", got, before)
	}
	if got := readSysctl(t, sysctlSrcValidMark); got != "0" {
		t.Errorf("src_valid_mark = %s without subnet routes, want 0", got)
	}
}

//go:build linux

package osnet

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	tailnet4 = netip.MustParsePrefix("100.64.0.0/10")
	tailnet6 = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
	self4    = netip.MustParsePrefix("100.64.0.7/32")
	self6    = netip.MustParsePrefix("fd7a:115c:a1e0::7/128")
)

func baseConfig() Config {
	return Config{
		Addresses:     []netip.Prefix{self4, self6},
		TailnetRoutes: []netip.Prefix{tailnet4, tailnet6},
	}
}

// newRouter creates a Router in the current namespace and closes it (and
// its TUN) when the test ends.
func newRouter(t *testing.T, opts Options) *Router {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		r.TUN().Close()
	})
	return r
}

// linkState is the TUN's addresses and main-table routes, as prefixes.
func linkState(t *testing.T, h *netlink.Handle, dev string) (addrs, routes []netip.Prefix) {
	t.Helper()
	link, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("find %s: %v", dev, err)
	}
	as, err := h.AddrList(link, unix.AF_UNSPEC)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if p, ok := prefixOf(a.IPNet); ok && !p.Addr().IsLinkLocalUnicast() {
			addrs = append(addrs, p)
		}
	}
	rs, err := h.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if p, ok := routeDst(r); ok && r.Protocol != unix.RTPROT_KERNEL {
			routes = append(routes, p)
		}
	}
	return normPrefixes(addrs, false), normPrefixes(routes, false)
}

func TestTUNAddressesAndRoutes(t *testing.T) {
	l := newLab(t, 1)
	r := newRouter(t, Options{})
	if err := r.Apply(baseConfig()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	h := l.handle(0)
	link, err := h.LinkByName(DefaultTUNName)
	if err != nil {
		t.Fatalf("TUN %s not found: %v", DefaultTUNName, err)
	}
	if link.Type() != "tuntap" {
		t.Errorf("link type = %q, want tuntap", link.Type())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Error("TUN is not up")
	}
	if link.Attrs().MTU != DefaultMTU {
		t.Errorf("MTU = %d, want %d", link.Attrs().MTU, DefaultMTU)
	}
	addrs, routes := linkState(t, h, DefaultTUNName)
	if want := normPrefixes([]netip.Prefix{self4, self6}, false); !slices.Equal(addrs, want) {
		t.Errorf("addresses = %v, want %v", addrs, want)
	}
	if want := normPrefixes([]netip.Prefix{tailnet4, tailnet6}, false); !slices.Equal(routes, want) {
		t.Errorf("routes = %v, want %v", routes, want)
	}
	if got := routeDev(t, h, "100.100.1.1", 0); got != DefaultTUNName {
		t.Errorf("a tailnet address routes via %s, want %s", got, DefaultTUNName)
	}
	if got := routeDev(t, h, "fd7a:115c:a1e0::99", 0); got != DefaultTUNName {
		t.Errorf("a tailnet IPv6 address routes via %s, want %s", got, DefaultTUNName)
	}
}

// changeRecorder collects route and address notifications in one
// namespace, so a test can see exactly which changes an Apply made.
type changeRecorder struct {
	t      *testing.T
	h      *netlink.Handle
	routes chan netlink.RouteUpdate
	addrs  chan netlink.AddrUpdate
	done   chan struct{}
}

func recordChanges(t *testing.T, l *lab, i int) *changeRecorder {
	t.Helper()
	c := &changeRecorder{t: t, h: l.handle(i), routes: make(chan netlink.RouteUpdate, 100),
		addrs: make(chan netlink.AddrUpdate, 100), done: make(chan struct{})}
	ns := l.ns[i]
	if err := netlink.RouteSubscribeWithOptions(c.routes, c.done, netlink.RouteSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatalf("subscribe routes: %v", err)
	}
	if err := netlink.AddrSubscribeWithOptions(c.addrs, c.done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatalf("subscribe addresses: %v", err)
	}
	t.Cleanup(func() { close(c.done) })
	return c
}

// drain returns the changes seen up to now. It adds and removes a marker
// route and a marker address on lo and reads until both removals arrive:
// the kernel delivers each socket's notifications in order, so everything
// before the markers has arrived too. The exception is a new IPv6
// address, which the kernel announces from a work queue once it is ready;
// drain keeps reading (bounded) until the IPv6 additions in want arrive.
func (c *changeRecorder) drain(want []string) []string {
	c.t.Helper()
	lo, err := c.h.LinkByName("lo")
	if err != nil {
		c.t.Fatal(err)
	}
	marker := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("192.0.2.255/32")), Table: 99}
	markerAddr := &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("192.0.2.254/32"))}
	for _, err := range []error{c.h.RouteAdd(marker), c.h.RouteDel(marker), c.h.AddrAdd(lo, markerAddr), c.h.AddrDel(lo, markerAddr)} {
		if err != nil {
			c.t.Fatal(err)
		}
	}
	var out []string
	routesDone, addrsDone := false, false
	timeout := time.After(10 * time.Second) // a hang guard, not a measurement
	pendingV6 := func() bool {
		for _, w := range want {
			if strings.HasPrefix(w, "addr add") && strings.Contains(w, ":") && !slices.Contains(out, w) {
				return true
			}
		}
		return false
	}
	for !routesDone || !addrsDone || pendingV6() {
		select {
		case u := <-c.routes:
			if u.Table == 99 {
				routesDone = routesDone || u.Type == unix.RTM_DELROUTE
				continue
			}
			if u.Protocol == unix.RTPROT_KERNEL {
				continue // the kernel's own routes that follow address changes
			}
			op := "add"
			if u.Type == unix.RTM_DELROUTE {
				op = "del"
			}
			p, _ := routeDst(u.Route)
			out = append(out, "route "+op+" "+p.String())
		case a := <-c.addrs:
			if a.LinkIndex == lo.Attrs().Index {
				addrsDone = addrsDone || !a.NewAddr
				continue
			}
			out = append(out, addrChange(a))
		case <-timeout:
			c.t.Fatal("timed out waiting for netlink notifications")
		}
	}
	slices.Sort(out)
	return out
}

func addrChange(a netlink.AddrUpdate) string {
	op := "del"
	if a.NewAddr {
		op = "add"
	}
	return "addr " + op + " " + a.LinkAddress.String()
}

func TestApplyChangesOnlyTheDiff(t *testing.T) {
	l := newLab(t, 1)
	r := newRouter(t, Options{})
	h := l.handle(0)
	index := linkIndex(t, h, DefaultTUNName)
	subnet := netip.MustParsePrefix("192.168.7.0/24")
	other := netip.MustParsePrefix("10.20.0.0/16")

	rec := recordChanges(t, l, 0)
	cfg := baseConfig()
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := rec.drain([]string{"addr add " + self6.String()}); len(got) == 0 {
		t.Fatal("first Apply made no changes")
	}

	steps := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"same config again", cfg, nil},
		{"a subnet route added", withSubnets(cfg, subnet, other), []string{"route add 10.20.0.0/16", "route add 192.168.7.0/24"}},
		{"same config with prefixes in another order", withSubnets(cfg, other, subnet, subnet), nil},
		{"one subnet route removed", withSubnets(cfg, other), []string{"route del 192.168.7.0/24"}},
		{"IPv6 address changed", func() Config {
			c := withSubnets(cfg, other)
			c.Addresses = []netip.Prefix{self4, netip.MustParsePrefix("fd7a:115c:a1e0::8/128")}
			return c
		}(), []string{"addr add fd7a:115c:a1e0::8/128", "addr del fd7a:115c:a1e0::7/128"}},
	}
	for _, st := range steps {
		if err := r.Apply(st.cfg); err != nil {
			t.Fatalf("%s: Apply: %v", st.name, err)
		}
		got := rec.drain(st.want)
		if !slices.Equal(got, st.want) {
			t.Errorf("%s: changes = %q, want %q", st.name, got, st.want)
		}
		if idx := linkIndex(t, h, DefaultTUNName); idx != index {
			t.Errorf("%s: TUN index changed %d -> %d (device recreated)", st.name, index, idx)
		}
	}
}

func withSubnets(c Config, ps ...netip.Prefix) Config {
	c.SubnetRoutes = ps
	return c
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"zero config", Config{}, false},
		{"host addresses", baseConfig(), false},
		{"address with a prefix length", Config{Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/10")}}, true},
		{"invalid route", Config{TailnetRoutes: []netip.Prefix{{}}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.normalized()
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestNormalizedDropsDefaultSubnetRoutes(t *testing.T) {
	c, err := Config{SubnetRoutes: []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("192.168.1.9/24"), netip.MustParsePrefix("::/0"),
	}}.normalized()
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}; !slices.Equal(c.SubnetRoutes, want) {
		t.Errorf("SubnetRoutes = %v, want %v", c.SubnetRoutes, want)
	}
}

func TestSubnetRouteOverlappingLAN(t *testing.T) {
	l := newLab(t, 1)
	h := l.handle(0)
	setupHostLAN(t, h) // 192.168.50.0/24 on eth0
	r := newRouter(t, Options{})
	cfg := withSubnets(baseConfig(), netip.MustParsePrefix("192.168.50.0/24"), netip.MustParsePrefix("10.7.0.0/16"))
	if err := r.Apply(cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := routeDev(t, h, "192.168.50.9", 0); got != "eth0" {
		t.Errorf("the local LAN routes via %s, want eth0", got)
	}
	if got := routeDev(t, h, "10.7.1.1", 0); got != DefaultTUNName {
		t.Errorf("a subnet route routes via %s, want %s", got, DefaultTUNName)
	}
	w := r.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "192.168.50.0/24") {
		t.Errorf("warnings = %q, want one naming 192.168.50.0/24", w)
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"defaults", Options{}, false},
		{"custom numbers", Options{Mark: 0x100, MarkMask: 0xf00, Table: 1000, RulePriority: 100, MTU: 1420}, false},
		{"mark outside mask", Options{Mark: 0x1, MarkMask: 0xf0}, true},
		{"main table", Options{Table: unix.RT_TABLE_MAIN}, true},
		{"priority after main", Options{RulePriority: 32765}, true},
		{"MTU too small for IPv6", Options{MTU: 1200}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.withDefaults().validate()
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

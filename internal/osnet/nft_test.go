//go:build linux

package osnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nftDump describes every table, chain and rule in the current namespace,
// one line per rule, so tests can compare whole rulesets.
func nftDump(t *testing.T) []string {
	t.Helper()
	c := nftConn(t)
	tables, err := c.ListTables()
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var out []string
	for _, tb := range tables {
		out = append(out, fmt.Sprintf("table %d %s", tb.Family, tb.Name))
		chains, err := c.ListChainsOfTableFamily(tb.Family)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			out = append(out, fmt.Sprintf("chain %d %s %s", tb.Family, tb.Name, ch.Name))
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				var parts []string
				for _, e := range r.Exprs {
					parts = append(parts, fmt.Sprintf("%T%+v", e, e))
				}
				out = append(out, fmt.Sprintf("rule %d %s %s: %s", tb.Family, tb.Name, ch.Name, strings.Join(parts, " ")))
			}
		}
	}
	slices.Sort(out)
	return out
}

func nftConn(t *testing.T) *nftables.Conn {
	t.Helper()
	ns, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// addForeignTables creates tables weft must never touch: one with another
// name, and one named like weft's but in another family.
func addForeignTables(t *testing.T) {
	t.Helper()
	c := nftConn(t)
	for _, tb := range []*nftables.Table{
		{Name: "other", Family: nftables.TableFamilyINet},
		{Name: NFTableName, Family: nftables.TableFamilyIPv4},
	} {
		c.AddTable(tb)
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: tb, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{&expr.Counter{}}})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("add foreign tables: %v", err)
	}
}

// weftTableExprs returns the expressions of every rule in weft's table by
// chain, or nil when the table does not exist.
func weftTableExprs(t *testing.T) map[string][]expr.Any {
	t.Helper()
	c := nftConn(t)
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(tables, func(tb *nftables.Table) bool { return tb.Name == NFTableName }) {
		return nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]expr.Any{}
	for _, ch := range chains {
		if ch.Table.Name != NFTableName {
			continue
		}
		rules, err := c.GetRules(weftTable(), ch)
		if err != nil {
			t.Fatal(err)
		}
		out[ch.Name] = nil
		for _, r := range rules {
			out[ch.Name] = append(out[ch.Name], r.Exprs...)
		}
	}
	return out
}

func countExprs[T expr.Any](es []expr.Any) int {
	n := 0
	for _, e := range es {
		if _, ok := e.(T); ok {
			n++
		}
	}
	return n
}

func TestExitServerTable(t *testing.T) {
	l := newLab(t, 1)
	_ = l
	addForeignTables(t)
	foreignBefore := nftDump(t)

	r := newRouter(t, Options{})
	for _, name := range []string{sysctlIPv4Forward, sysctlIPv6Forward} {
		if err := r.inNS(func() error { return r.sys.set(name, "0") }); err != nil {
			t.Fatal(err)
		}
	}
	cfg := baseConfig()
	cfg.AdvertiseExitNode = true
	if err := r.Apply(cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if w := r.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	for _, name := range []string{sysctlIPv4Forward, sysctlIPv6Forward} {
		if got := readSysctl(t, name); got != "1" {
			t.Errorf("%s = %s, want 1", name, got)
		}
	}
	chains := weftTableExprs(t)
	if chains == nil {
		t.Fatal("weft's table is missing after Apply")
	}
	// One masquerade per tailnet prefix (IPv4 and IPv6).
	if n := countExprs[*expr.Masq](chains[chainPostrouting]); n != 2 {
		t.Errorf("postrouting has %d masquerades, want 2", n)
	}
	// MSS clamp for SYNs from and to each tailnet prefix, written from
	// "rt mtu".
	// (The library cannot decode the "rt" load when reading rules back;
	// TestExitForwardingEndToEnd checks the clamp on real SYNs.)
	writes := 0
	for _, e := range chains[chainForward] {
		if x, ok := e.(*expr.Exthdr); ok && x.Op == expr.ExthdrOpTcpopt && x.Type == 2 && x.SourceRegister != 0 {
			writes++
		}
	}
	if writes != 4 {
		t.Errorf("forward has %d TCP MSS option writes, want 4", writes)
	}
	// The guard that keeps other interfaces out of the tunnel: one
	// counted drop (TestLabExitNodeLANCannotEnterTailnet checks it on
	// real packets).
	drops := 0
	for _, e := range chains[chainForward] {
		if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictDrop {
			drops++
		}
	}
	if drops != 1 || countExprs[*expr.Counter](chains[chainForward]) != 1 {
		t.Errorf("forward has %d drops and %d counters, want 1 each (the into-tunnel guard)", drops, countExprs[*expr.Counter](chains[chainForward]))
	}
	if n, err := r.IntoTunnelDrops(); n != 0 || err != nil {
		t.Errorf("IntoTunnelDrops = %d, %v on a fresh table; want 0, nil", n, err)
	}
	checkOffload(t, r, chains[chainForward])
	if _, ok := chains[chainPrerouting]; ok {
		t.Error("mark-restore chains present without an exit node in use")
	}
	afterFirst := nftDump(t)
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := nftDump(t); !slices.Equal(got, afterFirst) {
		t.Errorf("second Apply changed the ruleset:\n got %q\nwant %q", got, afterFirst)
	}

	// "weft down": the table goes, forwarding goes back to off.
	if err := r.Apply(baseConfig()); err != nil {
		t.Fatal(err)
	}
	if weftTableExprs(t) != nil {
		t.Error("weft's table still present after down")
	}
	if got := leftovers(t); len(got) != 0 {
		t.Errorf("Leftovers after down = %q", got)
	}
	for _, name := range []string{sysctlIPv4Forward, sysctlIPv6Forward} {
		if got := readSysctl(t, name); got != "0" {
			t.Errorf("%s = %s after down, want 0 (as before weft)", name, got)
		}
	}

	// Up again, then Close.
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if weftTableExprs(t) != nil {
		t.Error("weft's table still present after Close")
	}
	if got := nftDump(t); !slices.Equal(got, foreignBefore) {
		t.Errorf("ruleset after Close differs from before weft:\n got %q\nwant %q", got, foreignBefore)
	}
}

func TestForwardingLeftOnWhenAlreadyOn(t *testing.T) {
	newLab(t, 1)
	r := newRouter(t, Options{})
	if err := r.inNS(func() error { return r.sys.set(sysctlIPv4Forward, "1") }); err != nil {
		t.Fatal(err)
	}
	if err := r.inNS(func() error { return r.sys.set(sysctlIPv6Forward, "0") }); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.AdvertiseRoutes = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// weft turned on only IPv6 forwarding, so only that is turned off.
	if got := readSysctl(t, sysctlIPv4Forward); got != "1" {
		t.Errorf("ip_forward = %s after Close, want 1 (it was on before weft)", got)
	}
	if got := readSysctl(t, sysctlIPv6Forward); got != "0" {
		t.Errorf("IPv6 forwarding = %s after Close, want 0", got)
	}
}

func TestNoSNATSubnetRoutes(t *testing.T) {
	newLab(t, 1)
	r := newRouter(t, Options{})
	cfg := baseConfig()
	cfg.AdvertiseExitNode = true
	cfg.AdvertiseRoutes = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("fd00:1::/64")}
	tests := []struct {
		name        string
		noSNAT      bool
		wantReturns int
	}{
		{"masquerade subnet routes", false, 0},
		{"keep sources for subnet routes", true, 2},
	}
	for _, tc := range tests {
		cfg.NoSNATSubnetRoutes = tc.noSNAT
		if err := r.Apply(cfg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		post := weftTableExprs(t)[chainPostrouting]
		returns := 0
		for _, e := range post {
			if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictReturn {
				returns++
			}
		}
		if returns != tc.wantReturns {
			t.Errorf("%s: %d return rules, want %d", tc.name, returns, tc.wantReturns)
		}
		// Exit-node internet traffic is masqueraded either way.
		if n := countExprs[*expr.Masq](post); n != 2 {
			t.Errorf("%s: %d masquerades, want 2", tc.name, n)
		}
	}
}

func TestExitClientMarkRestore(t *testing.T) {
	newLab(t, 1)
	r := newRouter(t, Options{})
	cfg := baseConfig()
	cfg.ExitNode = true
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	chains := weftTableExprs(t)
	if chains == nil {
		t.Fatal("no weft table while an exit node is in use")
	}
	for _, name := range []string{chainOutput, chainPrerouting} {
		if n := countExprs[*expr.Ct](chains[name]); n != 1 {
			t.Errorf("chain %s has %d conntrack expressions, want 1", name, n)
		}
	}
	if _, ok := chains[chainPostrouting]; ok {
		t.Error("masquerade chain present on a node that does not forward")
	}
	cfg.ExitNode = false
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if weftTableExprs(t) != nil {
		t.Error("weft's table still present after the exit node was cleared")
	}
}

func TestCleanupRemovesStaleState(t *testing.T) {
	l := newLab(t, 1)
	h := l.handle(0)
	setupHostLAN(t, h)
	addForeignTables(t)
	// Cleanup leaves forwarding as the crashed run left it (its earlier
	// value is unknown), and IPv6 forwarding brings kernel routes of its
	// own (subnet-router anycast), so it is on from the start here.
	for _, name := range []string{sysctlIPv4Forward, sysctlIPv6Forward} {
		if err := (sysctls{root: "/proc/sys"}).set(name, "1"); err != nil {
			t.Fatal(err)
		}
	}
	routingBefore := routingDump(t, h)
	nftBefore := nftDump(t)

	// A run that crashes: everything on, then the Router is dropped
	// without Close. While its TUN is open the run counts as alive.
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.TUN().Close()
	cfg := baseConfig()
	cfg.ExitNode, cfg.ExitNodeAllowLAN, cfg.AdvertiseExitNode = true, true, true
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if weftTableExprs(t) == nil {
		t.Fatal("setup: no weft table")
	}
	// Both suppress and mark rule, per family; two default routes; the table.
	if got := leftovers(t); len(got) != 4+2+1 {
		t.Errorf("Leftovers before Cleanup = %q, want 7 items", got)
	}

	// A live run's state is not Cleanup's: a second daemon must not
	// undo the first one's exit-node rules.
	if err := Cleanup(Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("Cleanup while the TUN is open: %v, want ErrInUse", err)
	}
	if got := leftovers(t); len(got) != 4+2+1 {
		t.Errorf("Cleanup with a live TUN removed something: Leftovers = %q", got)
	}
	// The crash: the kernel deletes the TUN and the routes through it.
	r.TUN().Close()
	if err := Cleanup(Options{}); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if weftTableExprs(t) != nil {
		t.Error("weft's table survived Cleanup")
	}
	if got := leftovers(t); len(got) != 0 {
		t.Errorf("Leftovers after Cleanup = %q", got)
	}
	if got := nftDump(t); !slices.Equal(got, nftBefore) {
		t.Errorf("nftables after Cleanup:\n got %q\nwant %q", got, nftBefore)
	}
	if got := routingDump(t, h); !slices.Equal(got, routingBefore) {
		t.Errorf("routing after Cleanup:\n got %q\nwant %q", got, routingBefore)
	}
	// Cleanup with nothing to clean is fine.
	if err := Cleanup(Options{}); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

// TestForwardingWarning checks that a node that cannot turn forwarding on
// (a read-only /proc/sys in a container) still comes up and says why it
// cannot forward.
func TestForwardingWarning(t *testing.T) {
	newLab(t, 1)
	r := newRouter(t, Options{})
	r.sys = sysctls{root: t.TempDir()} // no sysctl files at all
	cfg := baseConfig()
	cfg.AdvertiseExitNode = true
	if err := r.Apply(cfg); err != nil {
		t.Fatalf("Apply failed instead of warning: %v", err)
	}
	w := r.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "forwarding") {
		t.Errorf("warnings = %q, want one about forwarding", w)
	}
	if weftTableExprs(t) == nil {
		t.Error("no weft table although only forwarding failed")
	}
	if err := r.Apply(baseConfig()); err != nil {
		t.Fatal(err)
	}
	if w := r.Warnings(); len(w) != 0 {
		t.Errorf("warnings after down = %q, want none", w)
	}
}

func TestRouterAdvertisementWarning(t *testing.T) {
	l := newLab(t, 1)
	h := l.handle(0)
	setupHostLAN(t, h)
	// Make eth0's IPv6 default route look learned from an advertisement.
	eth0 := linkIndex(t, h, "eth0")
	if err := h.RouteDel(&netlink.Route{LinkIndex: eth0, Gw: net.ParseIP("fd00:50::1")}); err != nil {
		t.Fatal(err)
	}
	mustRoute(t, h, &netlink.Route{LinkIndex: eth0, Gw: net.ParseIP("fd00:50::1"), Protocol: unix.RTPROT_RA})
	sys := sysctls{root: "/proc/sys"}
	r := newRouter(t, Options{})
	cfg := baseConfig()
	cfg.AdvertiseExitNode = true
	tests := []struct {
		acceptRA string
		warn     bool
	}{{"1", true}, {"2", false}}
	for _, tc := range tests {
		if err := sys.set("net/ipv6/conf/eth0/accept_ra", tc.acceptRA); err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		w := r.Warnings()
		got := len(w) == 1 && strings.Contains(w[0], "net.ipv6.conf.eth0.accept_ra=2")
		if got != tc.warn || len(w) > 1 {
			t.Errorf("accept_ra=%s: warnings = %q, want a warning: %v", tc.acceptRA, w, tc.warn)
		}
	}
}

// TestCloseAfterDeviceClosed follows the daemon's exit order: wireguard-go
// closes the TUN first, then the Router is closed.
func TestCloseAfterDeviceClosed(t *testing.T) {
	l := newLab(t, 1)
	h := l.handle(0)
	setupHostLAN(t, h)
	routingBefore := routingDump(t, h)
	nftBefore := nftDump(t)
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.ExitNode, cfg.AdvertiseExitNode = true, true
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	r.TUN().Close()
	if err := r.Close(); err != nil {
		t.Fatalf("Close after the TUN went away: %v", err)
	}
	if got := leftovers(t); len(got) != 0 {
		t.Errorf("Leftovers after Close = %q", got)
	}
	if err := r.Apply(cfg); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
	if got := nftDump(t); !slices.Equal(got, nftBefore) {
		t.Errorf("nftables after Close:\n got %q\nwant %q", got, nftBefore)
	}
	if got := routingDump(t, h); !slices.Equal(got, routingBefore) {
		t.Errorf("routing after Close:\n got %q\nwant %q", got, routingBefore)
	}
}

// TestRouterStaysInItsNamespace calls a Router from a thread in another
// namespace: every change must still land in the Router's own.
func TestRouterStaysInItsNamespace(t *testing.T) {
	l := newLab(t, 2)
	sys := sysctls{root: "/proc/sys"}
	for i := range 2 {
		l.enter(i)
		if err := sys.set(sysctlIPv4Forward, "0"); err != nil {
			t.Fatal(err)
		}
	}
	l.enter(0)
	r := newRouter(t, Options{})
	l.enter(1)
	cfg := baseConfig()
	cfg.AdvertiseExitNode = true
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := readSysctl(t, sysctlIPv4Forward); got != "0" {
		t.Errorf("the other namespace's ip_forward = %s, want 0", got)
	}
	if weftTableExprs(t) != nil {
		t.Error("weft's table appeared in the other namespace")
	}
	l.enter(0)
	if got := readSysctl(t, sysctlIPv4Forward); got != "1" {
		t.Errorf("the Router's namespace's ip_forward = %s, want 1", got)
	}
	if weftTableExprs(t) == nil {
		t.Error("weft's table missing in the Router's namespace")
	}
	if _, routes := linkState(t, l.handle(0), DefaultTUNName); len(routes) != 2 {
		t.Errorf("routes in the Router's namespace = %v, want the two tailnet routes", routes)
	}
}

func leftovers(t *testing.T) []string {
	t.Helper()
	got, err := Leftovers(Options{})
	if err != nil {
		t.Fatalf("Leftovers: %v", err)
	}
	return got
}

// checkOffload: where the kernel has flow tables, weft's table has one
// holding the TUN and the forward chain offloads tailnet traffic to it
// (one rule per tailnet prefix and direction); where it has none, the
// Router noted that once and the table is complete without it.
func checkOffload(t *testing.T, r *Router, forward []expr.Any) {
	t.Helper()
	offloads := countExprs[*expr.FlowOffload](forward)
	if !kernelHasFlowtables(t, r.opts.TUNName) {
		t.Logf("this kernel has no nftables flow tables: checking the fallback")
		if !r.noOffload || offloads != 0 {
			t.Errorf("kernel without flow tables: noOffload = %v, %d flow offload rules; want true, 0", r.noOffload, offloads)
		}
		return
	}
	if r.noOffload || offloads != 4 {
		t.Errorf("kernel with flow tables: noOffload = %v, %d flow offload rules; want false, 4", r.noOffload, offloads)
	}
	fts, err := nftConn(t).ListFlowtables(weftTable())
	if err != nil || len(fts) != 1 || !slices.Contains(fts[0].Devices, r.opts.TUNName) {
		t.Errorf("weft's flow tables %+v (%v): want one holding %s", fts, err, r.opts.TUNName)
	}
}

// kernelHasFlowtables reports whether a flow table over dev can be made
// in the current namespace, in a scratch table removed again.
func kernelHasFlowtables(t *testing.T, dev string) bool {
	t.Helper()
	c := nftConn(t)
	tb := c.AddTable(&nftables.Table{Name: "weftprobe", Family: nftables.TableFamilyINet})
	c.AddFlowtable(&nftables.Flowtable{Table: tb, Name: "probe", Devices: []string{dev},
		Hooknum: nftables.FlowtableHookIngress, Priority: nftables.FlowtablePriorityFilter})
	if err := c.Flush(); err != nil {
		return false
	}
	c.DelTable(tb)
	if err := c.Flush(); err != nil {
		t.Fatalf("removing the scratch table: %v", err)
	}
	return true
}

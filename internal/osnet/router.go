//go:build linux

package osnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"

	"weft/internal/tailnet"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

func (o Options) validate() error {
	switch {
	case o.Mark&^o.MarkMask != 0:
		return fmt.Errorf("osnet: mark %#x has bits outside mask %#x, so weft's rule could never match it", o.Mark, o.MarkMask)
	case o.Table <= 0 || (o.Table >= unix.RT_TABLE_DEFAULT && o.Table <= unix.RT_TABLE_LOCAL):
		return fmt.Errorf("osnet: routing table %d is reserved; choose another", o.Table)
	case o.RulePriority <= 0 || o.RulePriority+1 >= 32766:
		return fmt.Errorf("osnet: rule priority %d must be between 1 and 32764, before the main table", o.RulePriority)
	case o.MTU < 1280:
		return fmt.Errorf("osnet: MTU %d is below 1280, the least IPv6 needs", o.MTU)
	}
	return nil
}

func (o Options) policy() policy {
	return policy{mark: o.Mark, mask: o.MarkMask, table: o.Table, prio: o.RulePriority}
}

// Router owns weft's TUN device and everything weft changes in one
// network namespace.
type Router struct {
	opts Options
	pol  policy
	ns   netns.NsHandle  // the namespace New ran in; closed by Close
	h    *netlink.Handle // bound to ns
	nft  *nftables.Conn  // bound to ns
	dev  tun.Device      // owned by the caller after New
	link int             // the TUN's interface index
	sys  sysctls
	ipv6 bool // whether the namespace has IPv6 at all; set by New

	mu       sync.Mutex // guards the fields below
	closed   bool
	saved    savedSysctls
	nftState natSpec // what weft's nftables table holds now
	// noOffload is set once the kernel refused weft's flow table (no
	// nf_flow_table support): forwarding goes on without it, said once.
	noOffload bool
	// intoTunnelBase is what earlier builds of weft's table counted in
	// the into-tunnel rule; rebuilding the table resets the rule's own
	// counter.
	intoTunnelBase uint64
	warnings       []string // health problems found by the last Apply
}

// New creates the TUN device (brought up, with the MTU from opts) in the
// calling thread's network namespace and returns a Router bound to that
// namespace. The returned Router's TUN() is meant for wireguard-go, whose
// device closes it; Close does not close it, so a caller that never hands
// it over closes it itself.
func New(opts Options) (*Router, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("osnet: current network namespace: %w", err)
	}
	r := &Router{opts: opts, pol: opts.policy(), ns: ns, sys: sysctls{root: "/proc/sys"}}
	fail := func(err error) (*Router, error) {
		if r.dev != nil {
			r.dev.Close()
		}
		if r.h != nil {
			r.h.Close()
		}
		ns.Close()
		return nil, err
	}
	if r.h, err = netlink.NewHandleAt(ns); err != nil {
		return fail(fmt.Errorf("osnet: netlink: %w", err))
	}
	if r.nft, err = nftables.New(nftables.WithNetNSFd(int(ns))); err != nil {
		return fail(fmt.Errorf("osnet: nftables: %w", err))
	}
	if err := r.inNS(func() error {
		_, err := os.Stat("/proc/sys/net/ipv6")
		r.ipv6 = err == nil
		d, err := tun.CreateTUN(opts.TUNName, opts.MTU)
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("osnet: create TUN %s: %w (is another weft daemon running? choose another name with --tun)", opts.TUNName, err)
		}
		if err != nil {
			return fmt.Errorf("osnet: create TUN %s (needs root or CAP_NET_ADMIN and /dev/net/tun): %w", opts.TUNName, err)
		}
		r.dev = d
		return nil
	}); err != nil {
		return fail(err)
	}
	link, err := r.h.LinkByName(opts.TUNName)
	if err != nil {
		return fail(fmt.Errorf("osnet: find TUN %s: %w", opts.TUNName, err))
	}
	r.link = link.Attrs().Index
	if err := r.h.LinkSetUp(link); err != nil {
		return fail(fmt.Errorf("osnet: bring %s up: %w", opts.TUNName, err))
	}
	opts.Logger.Info("TUN created", "name", opts.TUNName, "mtu", opts.MTU, "index", r.link)
	return r, nil
}

// SetMTU sets the TUN device's MTU (path MTU discovery picks it; the
// device starts at Options.MTU). Values below 1280 are refused: the
// tailnet carries IPv6.
func (r *Router) SetMTU(mtu int) error {
	if mtu < 1280 {
		return fmt.Errorf("osnet: MTU %d is below 1280, the least IPv6 needs", mtu)
	}
	link, err := r.h.LinkByIndex(r.link)
	if err != nil {
		return fmt.Errorf("osnet: find TUN %s: %w", r.opts.TUNName, err)
	}
	if link.Attrs().MTU == mtu {
		return nil
	}
	if err := r.h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("osnet: set %s MTU to %d: %w", r.opts.TUNName, mtu, err)
	}
	return nil
}

// TUN returns the device for wireguard-go.
func (r *Router) TUN() tun.Device { return r.dev }

// Name returns the TUN device's name.
func (r *Router) Name() string { return r.opts.TUNName }

// Mark returns the SO_MARK weft's own sockets must carry to bypass the exit
// node: pass it to MarkControl, Dialer or ListenConfig, and to the
// WireGuard bind's SetMark.
func (r *Router) Mark() uint32 { return r.opts.Mark }

// Warnings returns the host problems the last Apply found but could work
// around, in plain words (for example forwarding that could not be turned
// on). It is empty when all is well.
func (r *Router) Warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.warnings)
}

// inNS runs fn on a thread in the Router's namespace. Usually the calling
// thread already is (the daemon never changes namespace), and fn runs
// right there. Otherwise fn runs on a fresh thread that enters the
// namespace and is thrown away afterwards (its goroutine exits still
// locked), so no other goroutine ever runs in a namespace it did not
// expect. Only TUN creation and /proc/sys access need this; netlink and
// nftables use sockets bound to the namespace.
func (r *Router) inNS(fn func() error) error {
	runtime.LockOSThread()
	cur, err := netns.Get()
	same := err == nil && cur.Equal(r.ns)
	if err == nil {
		cur.Close()
	}
	if same {
		defer runtime.UnlockOSThread()
		return fn()
	}
	runtime.UnlockOSThread()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(r.ns); err != nil {
			errc <- fmt.Errorf("osnet: enter network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Apply makes the host match cfg, changing only what differs from what
// the kernel has now. It is safe to call with the same Config repeatedly.
// A problem weft can live with (forwarding it could not turn on) is not
// an error; it appears in Warnings.
func (r *Router) Apply(cfg Config) error {
	cfg, err := cfg.normalized()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	link, err := r.h.LinkByIndex(r.link)
	if err != nil {
		return fmt.Errorf("osnet: TUN %s is gone (was its device closed?): %w", r.opts.TUNName, err)
	}
	var pr problems
	r.applyLinkLocked(link, cfg, &pr)
	policyOn := r.applyPolicyLocked(link, cfg, &pr)
	r.applyForwardingLocked(cfg, &pr)
	r.applyFirewallLocked(cfg, policyOn, &pr)
	if !cfg.forwards() {
		pr.err(r.inNS(func() error { return r.saved.restore(r.sys, sysctlIPv4Forward, sysctlIPv6Forward) }))
	}

	r.warnings = r.warnings[:0]
	for _, w := range pr.warns {
		r.warnings = append(r.warnings, w.Error())
		r.opts.Logger.Warn("host network", "problem", w)
	}
	return errors.Join(pr.errs...)
}

// problems gathers what one Apply found: errors, and warnings weft can
// live with. Each phase adds to it and the next phase still runs.
type problems struct {
	errs, warns []error
}

// err records e if it is not nil.
func (p *problems) err(e error) {
	if e != nil {
		p.errs = append(p.errs, e)
	}
}

// warn records e as a warning if it is not nil.
func (p *problems) warn(e error) {
	if e != nil {
		p.warns = append(p.warns, e)
	}
}

// applyLinkLocked puts the node's addresses on the TUN and the tailnet
// routes in the main table. r.mu is held.
func (r *Router) applyLinkLocked(link netlink.Link, cfg Config, pr *problems) {
	pr.err(syncAddrs(r.opts.Logger, r.h, link, r.families(cfg.Addresses)))
	_, err := syncLinkRoutes(r.opts.Logger, r.h, link, tableMain, r.families(cfg.TailnetRoutes))
	pr.err(err)
}

// applyPolicyLocked sets up or tears down what lives in weft's own
// routing table: the exit node's default routes and the accepted subnet
// routes, the rules that lead there, and src_valid_mark. Both sit behind
// the mark rule, so weft's own sockets never follow them and reach a
// relay, a STUN server or a peer's endpoint inside an accepted subnet over
// the physical network. Routes go in before the rules that lead to them
// and come out after, so no packet is sent to an empty table. It reports
// whether the rules are in place. r.mu is held.
func (r *Router) applyPolicyLocked(link netlink.Link, cfg Config, pr *problems) bool {
	subnets, shadowed := r.unshadowed(link, r.families(cfg.SubnetRoutes))
	for _, p := range shadowed {
		pr.warn(fmt.Errorf("route %s from the tailnet is not used because this host already has a route for it (the local network wins); ask the route's owner to advertise a different range", p))
	}
	want := subnets
	if cfg.ExitNode {
		want = normPrefixes(slices.Concat(want, r.families(tailnet.ExitRoutes())), true)
	}
	if len(want) > 0 {
		_, err := syncLinkRoutes(r.opts.Logger, r.h, link, r.pol.table, want)
		pr.err(err)
		// Without an exit node (or with LAN access) the main table is
		// asked first for all but its default route, so the LAN and every
		// other route of the host win over an accepted subnet, as they
		// did when subnet routes lived in the main table.
		pr.err(r.syncAllRules(true, !cfg.ExitNode || cfg.ExitNodeAllowLAN))
		if err := r.inNS(func() error { return r.saved.turnOn(r.sys, sysctlSrcValidMark) }); err != nil {
			pr.warn(fmt.Errorf("replies to weft's own traffic may be dropped by strict reverse-path filtering: %w", err))
		}
		return true
	}
	pr.err(r.syncAllRules(false, false))
	pr.err(flushTable(r.opts.Logger, r.h, r.pol.table))
	pr.err(r.inNS(func() error { return r.saved.restore(r.sys, sysctlSrcValidMark) }))
	return false
}

// unshadowed splits accepted subnet routes into those weft routes into
// the TUN and those the host already has a main-table route for, on
// another interface (a peer advertises the local LAN's range): there the
// host's own route wins and weft leaves the prefix alone.
func (r *Router) unshadowed(link netlink.Link, subnets []netip.Prefix) (use, shadowed []netip.Prefix) {
	if len(subnets) == 0 {
		return nil, nil
	}
	routes, err := r.h.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Table: tableMain}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return subnets, nil // the rules still let the host's routes win
	}
	host := map[netip.Prefix]bool{}
	for _, rt := range routes {
		if rt.LinkIndex == link.Attrs().Index {
			continue
		}
		if p, ok := routeDst(rt); ok {
			host[p] = true
		}
	}
	for _, p := range subnets {
		if host[p] {
			shadowed = append(shadowed, p)
		} else {
			use = append(use, p)
		}
	}
	return use, shadowed
}

// applyForwardingLocked turns IP forwarding on for an exit node or subnet
// router and warns about what forwarding breaks on this host. r.mu is
// held. Forwarding is turned back off after the firewall, in Apply.
func (r *Router) applyForwardingLocked(cfg Config, pr *problems) {
	if !cfg.forwards() {
		return
	}
	names := []string{sysctlIPv4Forward}
	if r.ipv6 {
		names = append(names, sysctlIPv6Forward)
	}
	if err := r.inNS(func() error { return r.saved.turnOn(r.sys, names...) }); err != nil {
		pr.warn(fmt.Errorf("IP forwarding is off and weft could not turn it on, so this node cannot act as exit node or subnet router (set net.ipv4.ip_forward=1 and net.ipv6.conf.all.forwarding=1): %w", err))
	}
	if r.ipv6 {
		pr.warns = append(pr.warns, r.routerAdvertisementProblems()...)
	}
}

// applyFirewallLocked brings weft's nftables table to what cfg needs, if
// it differs from what was last applied; markReplies asks for the chains
// that give replies to weft's marked sockets the mark back (needed while
// weft's policy rules are in place). r.mu is held.
func (r *Router) applyFirewallLocked(cfg Config, markReplies bool, pr *problems) {
	spec := natSpec{MarkReplies: markReplies, Mark: r.pol.mark, MarkMask: r.pol.mask}
	if cfg.forwards() {
		spec.Forward, spec.TUN, spec.Tailnet = true, r.opts.TUNName, cfg.TailnetRoutes
		if cfg.NoSNATSubnetRoutes {
			spec.NoSNAT = cfg.AdvertiseRoutes
		}
	}
	if spec.Forward && !r.noOffload {
		spec.Offload = r.offloadDevices()
	}
	if spec.equal(r.nftState) {
		return
	}
	r.keepIntoTunnelCountLocked()
	err := applyNFT(r.nft, spec)
	if err != nil && len(spec.Offload) > 0 {
		// The table goes in as one batch, so nothing of it is in place:
		// try again without the flow table, and stop asking for one.
		r.noOffload = true
		spec.Offload = nil
		r.opts.Logger.Info("nftables flow offload unavailable; forwarded traffic takes the kernel's normal path", "err", err)
		err = applyNFT(r.nft, spec)
	}
	switch {
	case err != nil && !spec.Forward && !spec.empty():
		// Only the reply-mark chains were wanted: the exit node still
		// works wherever reverse-path filtering is loose or off.
		pr.warn(fmt.Errorf("replies to weft's own traffic may be dropped by strict reverse-path filtering (set net.ipv4.conf.all.rp_filter=2): %w", err))
	case err != nil:
		pr.err(err)
	default:
		r.nftState = spec
		r.opts.Logger.Info("nftables table updated", "table", "inet "+NFTableName, "forward", spec.Forward, "mark_replies", spec.MarkReplies)
	}
}

// offloadDevices lists the devices for weft's flow table: the TUN and
// every other interface that is up, neither loopback nor a bridge's or
// bond's port (a flow through a bridge is offloaded on the bridge), sorted.
// An interface that appears later is not in the table until the next
// Apply that rebuilds it; its flows take the normal path meanwhile.
func (r *Router) offloadDevices() []string {
	links, err := r.h.LinkList()
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 || a.MasterIndex != 0 {
			continue
		}
		out = append(out, a.Name)
	}
	slices.Sort(out)
	return out
}

// IntoTunnelDrops returns how many packets from this node's other
// networks (its LAN, its WAN) were refused entry into the tunnel since the
// Router was made: packets a forwarding node would otherwise have carried
// to the tailnet though they belonged to no connection a tailnet node
// opened. It stays 0 on a node that does not forward.
func (r *Router) IntoTunnelDrops() (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.nftState.Forward {
		return r.intoTunnelBase, nil
	}
	n, err := readIntoTunnelDrops(r.nft)
	return r.intoTunnelBase + n, err
}

// keepIntoTunnelCountLocked adds the into-tunnel rule's count to
// intoTunnelBase before the table is rebuilt. r.mu must be held.
func (r *Router) keepIntoTunnelCountLocked() {
	if !r.nftState.Forward {
		return
	}
	if n, err := readIntoTunnelDrops(r.nft); err == nil {
		r.intoTunnelBase += n
	}
}

// routerAdvertisementProblems finds interfaces whose IPv6 default route
// came from a router advertisement but which, with forwarding on, now
// ignore advertisements (accept_ra=1): that route would expire and the
// host lose IPv6. weft does not change accept_ra itself; it says so.
func (r *Router) routerAdvertisementProblems() []error {
	routes, err := r.h.RouteListFiltered(unix.AF_INET6, &netlink.Route{Table: tableMain, Protocol: unix.RTPROT_RA},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil
	}
	var problems []error
	seen := map[int]bool{}
	for _, rt := range routes {
		if p, ok := routeDst(rt); !ok || p.Bits() != 0 || seen[rt.LinkIndex] {
			continue
		}
		seen[rt.LinkIndex] = true
		link, err := r.h.LinkByIndex(rt.LinkIndex)
		if err != nil {
			continue
		}
		name := link.Attrs().Name
		var v string
		if err := r.inNS(func() (err error) { v, err = r.sys.get("net/ipv6/conf/" + name + "/accept_ra"); return err }); err != nil || v != "1" {
			continue
		}
		problems = append(problems, fmt.Errorf("with IPv6 forwarding on, %s ignores router advertisements and its IPv6 default route will expire; set net.ipv6.conf.%s.accept_ra=2", name, name))
	}
	return problems
}

// families drops IPv6 prefixes when the host has IPv6 disabled, so a
// tailnet with IPv6 addresses still works over IPv4 there.
func (r *Router) families(ps []netip.Prefix) []netip.Prefix {
	if r.ipv6 {
		return ps
	}
	return slices.DeleteFunc(slices.Clone(ps), func(p netip.Prefix) bool { return p.Addr().Is6() })
}

// syncAllRules puts weft's policy rules in place for both families (on),
// or removes them (off).
func (r *Router) syncAllRules(on, allowLAN bool) error {
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if fam == unix.AF_INET6 && !r.ipv6 {
			continue
		}
		var want []netlink.Rule
		if on {
			want = r.pol.wantRules(fam, allowLAN)
		}
		err := r.pol.syncRules(r.opts.Logger, r.h, fam, want)
		if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
			continue // IPv6 is disabled on this host
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close removes everything weft added to the host (addresses and routes on
// the TUN, policy rules, weft's routing table, weft's nftables table) and
// puts back the sysctls weft changed. The TUN device itself is closed by
// its owner (wireguard-go's device). Close is idempotent.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	var errs []error
	if err := r.Apply(Config{}); err != nil && !isGone(err) {
		errs = append(errs, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Apply fails early if the TUN is already gone; the rules, table and
	// nftables state must go regardless.
	if err := r.syncAllRules(false, false); err != nil {
		errs = append(errs, err)
	}
	if err := flushTable(r.opts.Logger, r.h, r.pol.table); err != nil {
		errs = append(errs, err)
	}
	if _, err := deleteNFT(r.nft); err != nil {
		errs = append(errs, err)
	}
	r.nftState = natSpec{}
	if err := r.inNS(func() error {
		return r.saved.restore(r.sys, sysctlIPv4Forward, sysctlIPv6Forward, sysctlSrcValidMark)
	}); err != nil {
		errs = append(errs, err)
	}
	r.closed = true
	r.h.Close()
	r.ns.Close()
	return errors.Join(errs...)
}

func isGone(err error) bool {
	var le netlink.LinkNotFoundError
	return errors.As(err, &le) || errors.Is(err, unix.ENODEV)
}

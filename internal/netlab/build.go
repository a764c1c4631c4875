//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"weft/internal/netlab/delayline"
)

// Interface names in the internet namespace, per attached node. Node names
// are at most 12 bytes, so these fit IFNAMSIZ.
const (
	inetBridge   = "br0"
	pubPortPfx   = "p-" // public host's port on the bridge
	wanPortPfx   = "w-" // router's WAN peer (the delay line's near side)
	delayPortPfx = "d-" // delay line's far side ...
	brPortPfx    = "b-" // ... whose peer is the bridge port
	hostPortPfx  = "h-" // in a router's namespace: a host's port on the LAN bridge
	nodeIf       = "eth0"
)

// Up builds topo: it first removes what an earlier run with the same
// Config left behind, then creates every namespace, link, address, route
// and NAT rule, starts the delay lines and whoami servers, and writes the
// state file. On failure or cancellation of ctx it removes everything it
// built before returning.
func Up(ctx context.Context, cfg Config, topo Topology) (*Lab, error) {
	if cfg.Prefix == "" || cfg.Dir == "" {
		return nil, errors.New("netlab: Config needs Prefix and Dir")
	}
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("netlab: the lab needs root (network namespaces); run as root")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if err := Remove(cfg.Dir, cfg.Prefix); err != nil {
		return nil, fmt.Errorf("netlab: remove stale lab: %w", err)
	}
	l := &Lab{prefix: cfg.Prefix, dir: cfg.Dir, log: cfg.Logger}
	l.plan(topo)
	l.mu.Lock()
	err := l.saveLocked() // before building, so a crash mid-way is found
	l.mu.Unlock()
	if err == nil {
		err = l.build(ctx, cfg, topo)
	}
	if err != nil {
		if derr := l.Down(context.Background()); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	return l, nil
}

// plan creates the Node values for topo.
func (l *Lab) plan(topo Topology) {
	add := func(n *Node) {
		n.NS = l.prefix + n.Name
		n.lab = l
		l.nodes = append(l.nodes, n)
	}
	add(&Node{Name: internetName, Kind: KindInternet})
	for _, r := range topo.Routers {
		rn := &Node{Name: r.Name, Kind: KindRouter, LANAddr: gatewayAddr(r.LAN), LAN: r.LAN, WANAddr: r.WAN,
			NAT: r.NAT, DelayMS: r.Delay.Milliseconds(), RateMbit: r.RateMbit}
		if r.IPv6 != IPv6None {
			rn.LANAddr6, rn.LAN6, rn.WANAddr6 = gatewayAddr6(r.LAN6), r.LAN6, r.WAN6
		}
		if r.IPv6 == IPv6Only {
			rn.LANAddr, rn.LAN = netip.Addr{}, netip.Prefix{}
		}
		add(rn)
		for i, h := range r.Hosts {
			hn := &Node{Name: h, Kind: KindHost, LANAddr: hostAddr(r.LAN, i), LAN: r.LAN, Router: r.Name}
			if r.IPv6 != IPv6None {
				hn.LANAddr6, hn.LAN6 = hostAddr6(r.LAN6, i), r.LAN6
			}
			if r.IPv6 == IPv6Only {
				hn.LANAddr, hn.LAN = netip.Addr{}, netip.Prefix{}
			}
			add(hn)
		}
	}
	for _, p := range topo.Public {
		add(&Node{Name: p.Name, Kind: KindPublic, WANAddr: p.Addr, WANAddr6: p.Addr6})
	}
}

// nsHandles keeps a netlink handle per namespace during the build.
type nsHandles struct {
	ns map[string]netns.NsHandle
	nl map[string]*netlink.Handle
}

func (h *nsHandles) close() {
	for _, x := range h.nl {
		x.Close()
	}
	for _, x := range h.ns {
		x.Close()
	}
}

func (l *Lab) build(ctx context.Context, cfg Config, topo Topology) error {
	h := &nsHandles{ns: map[string]netns.NsHandle{}, nl: map[string]*netlink.Handle{}}
	defer h.close()
	for _, n := range l.nodes {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("netlab: up: %w", err)
		}
		if err := createNS(n.NS); err != nil {
			return err
		}
		ns, err := netns.GetFromPath(filepath.Join(netnsDir, n.NS))
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", n.Name, err)
		}
		h.ns[n.Name] = ns
		nh, err := netlink.NewHandleAt(ns)
		if err != nil {
			return fmt.Errorf("netlab: %s: netlink: %w", n.Name, err)
		}
		h.nl[n.Name] = nh
		if err := l.baseSetup(n, nh); err != nil {
			return err
		}
	}
	inet := h.nl[internetName]
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: inetBridge}}
	if err := inet.LinkAdd(br); err != nil {
		return fmt.Errorf("netlab: internet bridge: %w", err)
	}
	if err := inet.LinkSetUp(br); err != nil {
		return fmt.Errorf("netlab: internet bridge: %w", err)
	}
	for _, p := range topo.Public {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("netlab: up: %w", err)
		}
		if err := l.buildPublic(h, topo, p); err != nil {
			return err
		}
	}
	// Routers on the internet first: a router behind another one hangs
	// its WAN on that one's LAN bridge.
	for _, nested := range []bool{false, true} {
		for _, r := range topo.Routers {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("netlab: up: %w", err)
			}
			if (r.Upstream != "") != nested {
				continue
			}
			if err := l.buildRouter(ctx, cfg, h, topo, r); err != nil {
				return err
			}
		}
	}
	for _, p := range topo.Public {
		if p.Whoami {
			if err := l.startWhoami(ctx, cfg, l.Node(p.Name)); err != nil {
				return err
			}
		}
	}
	return l.startPortMapping(ctx, cfg, h, topo)
}

// baseSetup brings up loopback and sets the namespace's forwarding: only
// routers forward (IPv6 only on sites that have it: setupRouter6). The internet namespace has no IPv6 at all, so its
// stack stays silent on the links it only carries frames over.
func (l *Lab) baseSetup(n *Node, nh *netlink.Handle) error {
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("netlab: %s: loopback: %w", n.Name, err)
	}
	return n.Do(func() error {
		fwd := "0"
		if n.Kind == KindRouter {
			fwd = "1"
		}
		if err := writeSysctl("net.ipv4.ip_forward", fwd); err != nil {
			return err
		}
		// No duplicate address detection: the lab hands out every
		// address once, and DAD keeps a fresh link-local address (the
		// source of neighbour discovery) unusable for a second or two
		// after the build, which delayed a site's first IPv6 packets.
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := writeSysctl(k, "0"); err != nil {
				return err
			}
		}
		if n.Kind == KindInternet {
			for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
				if err := writeSysctl(k, "1"); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// veth creates a veth pair, a in the namespace of ah and b in the
// namespace bns, and returns both ends (b looked up through bh).
func veth(ah *netlink.Handle, a string, bh *netlink.Handle, bns netns.NsHandle, b string) (netlink.Link, netlink.Link, error) {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}
	if bh != ah {
		v.PeerNamespace = netlink.NsFd(int(bns))
	}
	if err := ah.LinkAdd(v); err != nil {
		return nil, nil, fmt.Errorf("netlab: veth %s/%s: %w", a, b, err)
	}
	al, err := ah.LinkByName(a)
	if err != nil {
		return nil, nil, fmt.Errorf("netlab: veth %s: %w", a, err)
	}
	bl, err := bh.LinkByName(b)
	if err != nil {
		return nil, nil, fmt.Errorf("netlab: veth %s: %w", b, err)
	}
	return al, bl, nil
}

func up(nh *netlink.Handle, links ...netlink.Link) error {
	for _, ln := range links {
		if err := nh.LinkSetUp(ln); err != nil {
			return fmt.Errorf("netlab: set %s up: %w", ln.Attrs().Name, err)
		}
	}
	return nil
}

// addPublicAddr puts a public address on ln with its subnet's length.
func addPublicAddr(nh *netlink.Handle, ln netlink.Link, a netip.Addr) error {
	p, ok := internetPrefixOf(a)
	if !ok {
		return fmt.Errorf("netlab: %v is not a public lab address", a)
	}
	return addAddr(nh, ln, a, p.Bits())
}

// addDefaultOnLink routes everything not otherwise routed out of ln
// on-link: the whole lab internet is one link, so the other public subnet
// is reached by ARP, and destinations outside the lab fail with ARP rather
// than "no route".
func addDefaultOnLink(nh *netlink.Handle, ln netlink.Link) error {
	return nh.RouteAdd(&netlink.Route{LinkIndex: ln.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}})
}

func addAddr(nh *netlink.Handle, ln netlink.Link, a netip.Addr, bits int) error {
	ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
	if err := nh.AddrAdd(ln, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("netlab: address %v/%d on %s: %w", a, bits, ln.Attrs().Name, err)
	}
	return nil
}

func (l *Lab) buildPublic(h *nsHandles, topo Topology, p PublicHost) error {
	inet := h.nl[internetName]
	nh := h.nl[p.Name]
	eth, port, err := veth(nh, nodeIf, inet, h.ns[internetName], pubPortPfx+p.Name)
	if err != nil {
		return err
	}
	if err := l.enslave(inet, port); err != nil {
		return err
	}
	for _, a := range append([]netip.Addr{p.Addr}, p.Extra...) {
		if err := addPublicAddr(nh, eth, a); err != nil {
			return err
		}
	}
	if err := errors.Join(up(inet, port), up(nh, eth)); err != nil {
		return err
	}
	if err := addDefaultOnLink(nh, eth); err != nil {
		return fmt.Errorf("netlab: %s: default route: %w", p.Name, err)
	}
	if p.Addr6.IsValid() {
		if err := addAddr6(nh, eth, p.Addr6, InternetPrefix6.Bits()); err != nil {
			return err
		}
		if err := addSiteRoutes6(nh, eth, topo, ""); err != nil {
			return fmt.Errorf("netlab: %s: %w", p.Name, err)
		}
	}
	return nil
}

func (l *Lab) enslave(inet *netlink.Handle, port netlink.Link) error {
	br, err := inet.LinkByName(inetBridge)
	if err == nil {
		err = inet.LinkSetMaster(port, br)
	}
	if err != nil {
		return fmt.Errorf("netlab: attach %s to the internet: %w", port.Attrs().Name, err)
	}
	return nil
}

// buildRouter makes router r: its WAN link to the internet (through a
// delay line and shaped, if asked), its LAN bridge with NAT, and its hosts.
func (l *Lab) buildRouter(ctx context.Context, cfg Config, h *nsHandles, topo Topology, r Router) error {
	if r.Upstream != "" {
		if err := buildNestedWAN(h, topo.router(r.Upstream), r); err != nil {
			return err
		}
	} else if err := l.buildRouterWAN(ctx, cfg, h, topo, r); err != nil {
		return err
	}
	rh := h.nl[r.Name]
	lan := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: routerLAN}}
	if err := rh.LinkAdd(lan); err != nil {
		return fmt.Errorf("netlab: %s: LAN bridge: %w", r.Name, err)
	}
	if r.IPv6 != IPv6Only {
		if err := addAddr(rh, lan, gatewayAddr(r.LAN), r.LAN.Bits()); err != nil {
			return err
		}
	}
	if err := up(rh, lan); err != nil {
		return err
	}
	if r.IPv6 != IPv6Only {
		if err := installNAT(h.ns[r.Name], r.NAT, l.log); err != nil {
			return fmt.Errorf("netlab: %s: %w", r.Name, err)
		}
	}
	if r.IPv6 != IPv6None {
		if err := l.setupRouter6(h, r, lan); err != nil {
			return err
		}
	}
	if r.UDPTimeout != 0 {
		secs := fmt.Sprint(int(r.UDPTimeout.Seconds()))
		err := l.Node(r.Name).Do(func() error {
			return errors.Join(writeSysctl("net.netfilter.nf_conntrack_udp_timeout", secs),
				writeSysctl("net.netfilter.nf_conntrack_udp_timeout_stream", secs))
		})
		if err != nil {
			return fmt.Errorf("netlab: %s: UDP timeout: %w", r.Name, err)
		}
	}
	for i, host := range r.Hosts {
		if err := attachHost(h, r, lan, i, host); err != nil {
			return err
		}
	}
	return nil
}

// buildRouterWAN links router r to the internet bridge, directly or
// through a delay line, and shapes the link if r asks for a rate.
func (l *Lab) buildRouterWAN(ctx context.Context, cfg Config, h *nsHandles, topo Topology, r Router) error {
	inet := h.nl[internetName]
	rh := h.nl[r.Name]
	wan, wport, err := veth(rh, routerWAN, inet, h.ns[internetName], wanPortPfx+r.Name)
	if err != nil {
		return err
	}
	if r.IPv6 != IPv6Only {
		if err := addPublicAddr(rh, wan, r.WAN); err != nil {
			return err
		}
	}
	if err := up(rh, wan); err != nil {
		return err
	}
	if r.IPv6 != IPv6Only {
		if err := addDefaultOnLink(rh, wan); err != nil {
			return fmt.Errorf("netlab: %s: default route: %w", r.Name, err)
		}
	}
	if r.IPv6 != IPv6None {
		if err := errors.Join(addAddr6(rh, wan, r.WAN6, InternetPrefix6.Bits()), addSiteRoutes6(rh, wan, topo, r.Name)); err != nil {
			return fmt.Errorf("netlab: %s: %w", r.Name, err)
		}
	}
	if r.Delay == 0 && r.DelayIPv4 == 0 && r.DelayIPv6 == 0 && r.LossPercent == 0 {
		if err := l.enslave(inet, wport); err != nil {
			return err
		}
		if err := up(inet, wport); err != nil {
			return err
		}
	} else if err := l.buildDelayPort(ctx, cfg, h, r, wport); err != nil {
		return err
	}
	if r.LossPercent > 0 {
		// A lossy line drops frames; an offload super-frame (TSO,
		// UDP GSO: up to 64 KiB) carries dozens of packets, which
		// would then be lost together, a burst no real line makes.
		// One segment per frame leaving the router makes the loss
		// per packet, as LossPercent says (buildDelayPort does the
		// same for the other direction).
		if err := rh.LinkSetGSOMaxSegs(wan, 1); err != nil {
			return fmt.Errorf("netlab: %s: one segment per frame on the WAN: %w", r.Name, err)
		}
	}
	if r.RateMbit > 0 {
		// Upload is shaped leaving the router, download leaving the
		// internet's side of the WAN link (after the delay line).
		if err := rateLimit(rh, wan, r.RateMbit); err != nil {
			return fmt.Errorf("netlab: %s: %w", r.Name, err)
		}
		if err := rateLimit(inet, wport, r.RateMbit); err != nil {
			return fmt.Errorf("netlab: %s: %w", r.Name, err)
		}
	}
	return nil
}

// buildNestedWAN links router r's WAN to the LAN bridge of its upstream
// router upr, as a host of that LAN: its address there and a default
// route through upr.
func buildNestedWAN(h *nsHandles, upr *Router, r Router) error {
	rh, uh := h.nl[r.Name], h.nl[upr.Name]
	wan, port, err := veth(rh, routerWAN, uh, h.ns[upr.Name], hostPortPfx+r.Name)
	if err != nil {
		return err
	}
	lan, err := uh.LinkByName(routerLAN)
	if err == nil {
		err = uh.LinkSetMaster(port, lan)
	}
	if err != nil {
		return fmt.Errorf("netlab: %s: attach %s: %w", upr.Name, r.Name, err)
	}
	if err := addAddr(rh, wan, r.WAN, upr.LAN.Bits()); err != nil {
		return err
	}
	if err := errors.Join(up(uh, port), up(rh, wan)); err != nil {
		return err
	}
	if err := rh.RouteAdd(&netlink.Route{LinkIndex: wan.Attrs().Index, Gw: gatewayAddr(upr.LAN).AsSlice()}); err != nil {
		return fmt.Errorf("netlab: %s: default route: %w", r.Name, err)
	}
	return nil
}

// buildDelayPort puts a delay line between router r's WAN port wport and
// the internet bridge.
func (l *Lab) buildDelayPort(ctx context.Context, cfg Config, h *nsHandles, r Router, wport netlink.Link) error {
	inet := h.nl[internetName]
	dport, bport, err := veth(inet, delayPortPfx+r.Name, inet, h.ns[internetName], brPortPfx+r.Name)
	if err != nil {
		return err
	}
	if err := l.enslave(inet, bport); err != nil {
		return err
	}
	if r.LossPercent > 0 {
		// Frames from the bridge toward the router: one packet each
		// (see buildRouterWAN).
		if err := inet.LinkSetGSOMaxSegs(bport, 1); err != nil {
			return fmt.Errorf("netlab: %s: one segment per frame toward the router: %w", r.Name, err)
		}
	}
	// The delay line reads every frame on its two ports, whatever their
	// destination MAC.
	for _, p := range []netlink.Link{wport, dport} {
		if err := inet.SetPromiscOn(p); err != nil {
			return fmt.Errorf("netlab: promisc %s: %w", p.Attrs().Name, err)
		}
	}
	if err := up(inet, wport, dport, bport); err != nil {
		return err
	}
	return l.startDelayLine(ctx, cfg, r, wport.Attrs().Name, dport.Attrs().Name)
}

// attachHost links host, the i-th host of router r, to r's LAN bridge,
// with its address and default route.
func attachHost(h *nsHandles, r Router, lan netlink.Link, i int, host string) error {
	rh, hh := h.nl[r.Name], h.nl[host]
	eth, port, err := veth(hh, nodeIf, rh, h.ns[r.Name], hostPortPfx+host)
	if err != nil {
		return err
	}
	if r.MTU != 0 {
		// The bridge takes the smallest MTU of its ports, so the
		// router's forwarding sees the narrow hop and answers a
		// too-big packet with ICMP.
		if err := errors.Join(rh.LinkSetMTU(port, r.MTU), hh.LinkSetMTU(eth, r.MTU)); err != nil {
			return fmt.Errorf("netlab: %s: MTU %d: %w", r.Name, r.MTU, err)
		}
	}
	if err := rh.LinkSetMaster(port, lan); err != nil {
		return fmt.Errorf("netlab: %s: attach %s: %w", r.Name, host, err)
	}
	if r.IPv6 != IPv6Only {
		if err := addAddr(hh, eth, hostAddr(r.LAN, i), r.LAN.Bits()); err != nil {
			return err
		}
	}
	if r.IPv6 != IPv6None {
		if err := addAddr6(hh, eth, hostAddr6(r.LAN6, i), r.LAN6.Bits()); err != nil {
			return err
		}
	}
	if err := errors.Join(up(rh, port), up(hh, eth)); err != nil {
		return err
	}
	if r.IPv6 != IPv6Only {
		gw := gatewayAddr(r.LAN)
		if err := hh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("netlab: %s: default route: %w", host, err)
		}
	}
	if r.IPv6 != IPv6None {
		gw := gatewayAddr6(r.LAN6)
		if err := hh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("netlab: %s: default IPv6 route: %w", host, err)
		}
	}
	return nil
}

// rateLimit puts a token bucket on link's egress.
func rateLimit(nh *netlink.Handle, link netlink.Link, mbit int) error {
	rate := uint64(mbit) * 1_000_000 / 8 // bytes per second
	// The bucket holds at least 10 ms of traffic and one offloaded
	// 64 KiB frame; the queue another 50 ms on top.
	burst := max(rate/100, 64<<10)
	limit := rate/20 + burst
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Limit:      uint32(min(limit, 1<<31)),
		Buffer:     netlink.Xmittime(rate, uint32(burst)),
	}
	if err := nh.QdiscAdd(q); err != nil {
		return fmt.Errorf("rate %d Mbit/s on %s: %w", mbit, link.Attrs().Name, err)
	}
	return nil
}

// startDelayLine opens packet sockets on the two ports in the internet
// namespace and hands them to a `wire` helper process, which holds every
// frame for r.Delay. Opening them here means the line forwards as soon as
// the helper runs, with no readiness handshake.
func (l *Lab) startDelayLine(ctx context.Context, cfg Config, r Router, a, b string) error {
	if len(cfg.Helper) == 0 {
		return fmt.Errorf("netlab: %s has a delay or loss, which needs Config.Helper (the weft binary)", r.Name)
	}
	inet := l.Node(internetName)
	var fa, fb *os.File
	err := inet.Do(func() error {
		var err error
		if fa, err = delayline.Open(a); err != nil {
			return err
		}
		fb, err = delayline.Open(b)
		return err
	})
	defer func() {
		for _, f := range []*os.File{fa, fb} {
			if f != nil {
				f.Close()
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("netlab: %s: %w", r.Name, err)
	}
	argv := append(append([]string(nil), cfg.Helper...), "wire", "--fd-a", "3", "--fd-b", "4", "--delay", r.Delay.String(),
		"--loss", strconv.Itoa(r.LossPercent))
	if r.DelayIPv4 != 0 || r.DelayIPv6 != 0 {
		argv = append(argv, "--extra-ipv4", r.DelayIPv4.String(), "--extra-ipv6", r.DelayIPv6.String())
	}
	_, err = l.start(ctx, inet, "wire-"+r.Name, argv, []*os.File{fa, fb})
	return err
}

// startWhoami listens on port 80 in the node's namespace and hands the
// listener to a `whoami` helper process.
func (l *Lab) startWhoami(ctx context.Context, cfg Config, n *Node) error {
	if len(cfg.Helper) == 0 {
		return fmt.Errorf("netlab: %s serves whoami, which needs Config.Helper (the weft binary)", n.Name)
	}
	var f *os.File
	err := n.Do(func() error {
		ln, err := net.Listen("tcp4", net.JoinHostPort(n.WANAddr.String(), "80"))
		if err != nil {
			return err
		}
		defer ln.Close()
		f, err = ln.(*net.TCPListener).File()
		return err
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: whoami listener: %w", n.Name, err)
	}
	defer f.Close()
	argv := append(append([]string(nil), cfg.Helper...), "whoami", "--fd", strconv.Itoa(3))
	_, err = l.start(ctx, n, "whoami", argv, []*os.File{f})
	return err
}

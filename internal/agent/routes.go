package agent

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/controlclient"
	"weft/internal/magicsock"
	"weft/internal/node"
	"weft/internal/osnet"
	"weft/internal/tailnet"
	"weft/internal/wgcfg"
	"weft/internal/wire"
)

// routeState is the engine's share of the routing preferences. Its fields
// are guarded by Engine.mu, except kick, which is only sent on.
type routeState struct {
	prefs node.RoutePrefs
	// exitKnown is the exit node the last map resolved to ("" for none
	// or unresolved), so that a change is logged once, not per map.
	exitKnown string
	// kick asks the map loop to apply the last map again under new
	// preferences and to close the channel sent once done; the map loop
	// is the only one that applies, so a preference change never races
	// a newer map.
	kick chan chan struct{}
	// tunneled are the accepted subnet routes the host routes into the
	// TUN; guardedBind drops weft's own UDP to them (set by
	// endpointFilter, read on the send path).
	tunneled atomic.Pointer[[]netip.Prefix]
}

var _ node.PrefsEngine = (*Engine)(nil)

// applyWait bounds how long SetRoutePrefs waits for the change to be in
// place; applying takes milliseconds unless the host is in trouble.
const applyWait = 5 * time.Second

// SetRoutePrefs implements node.PrefsEngine: the preferences
// take effect on the last map, and on every map after it. It returns once
// the host and WireGuard are changed (or after applyWait), so that when
// `weft set --exit-node=` returns, traffic already leaves directly.
func (e *Engine) SetRoutePrefs(p node.RoutePrefs) {
	e.mu.Lock()
	e.rs.prefs = p
	e.mu.Unlock()
	done := make(chan struct{})
	timeout := time.NewTimer(applyWait)
	defer timeout.Stop()
	select {
	case e.rs.kick <- done:
	case <-e.ctx.Done():
		return
	case <-timeout.C:
		return
	}
	select {
	case <-done:
	case <-e.ctx.Done():
	case <-timeout.C:
	}
}

// reapply applies the last applied map again and closes done; it runs on
// the map loop.
func (e *Engine) reapply(done chan struct{}) {
	defer close(done)
	e.mu.Lock()
	nm := e.nm
	e.mu.Unlock()
	if nm == nil {
		return // the first map will use the preferences
	}
	if err := e.apply(nm); err != nil {
		e.log.Error("applying routing preferences", "err", err)
	}
}

// wgOptions resolves the chosen exit node in nm for WireGuard: only that
// peer gets the default routes in its allowed IPs. An exit node that does
// not resolve (gone, no longer approved) gets none, so internet traffic is
// dropped in the tunnel rather than leaking around it (osnet still routes
// it into the TUN); the user sees why in `weft exit-node list`.
func (e *Engine) wgOptions(nm *controlclient.NetMap, rp node.RoutePrefs) wgcfg.Options {
	opts := wgcfg.Options{AcceptRoutes: rp.AcceptRoutes}
	known := ""
	if rp.ExitNode != "" {
		n, err := rp.ResolveExitNode(nm)
		if err == nil {
			opts.ExitNode, known = n.NodeKey, n.Name
		}
		e.mu.Lock()
		changed := e.rs.exitKnown != known
		e.rs.exitKnown = known
		e.mu.Unlock()
		if changed && err != nil {
			e.log.Warn("exit node chosen but not usable; internet traffic is held back", "exit_node", rp.ExitNode, "err", err)
		} else if changed {
			e.log.Info("using exit node", "exit_node", known)
		}
	}
	return opts
}

// addRoutePrefs completes the host configuration with the preferences:
// peers' subnet routes when accepting routes, the exit-node policy
// routing when one is chosen, and forwarding with masquerading when this
// node offers routes.
//
// Forwarding is switched on as soon as the node offers, before an
// administrator approves, so an approval works without waiting for this
// node to hear of it. Until then the node forwards nothing for those
// routes all the same: honest peers route only what the map says is
// approved, and destGuard drops what a modified peer sends there.
func addRoutePrefs(oc *osnet.Config, nm *controlclient.NetMap, rp node.RoutePrefs) {
	if rp.AcceptRoutes {
		for _, p := range nm.SortedPeers() {
			for _, r := range p.Routes {
				if r.Bits() != 0 && !slices.Contains(oc.SubnetRoutes, r) {
					oc.SubnetRoutes = append(oc.SubnetRoutes, r)
				}
			}
		}
	}
	oc.ExitNode = rp.ExitNode != ""
	oc.ExitNodeAllowLAN = oc.ExitNode && rp.ExitNodeAllowLAN
	oc.AdvertiseExitNode = rp.AdvertiseExitNode
	oc.AdvertiseRoutes = slices.Clone(rp.AdvertiseRoutes)
	oc.NoSNATSubnetRoutes = rp.NoSNATSubnetRoutes
}

// routePartsEqual compares the parts of two host configurations that
// addRoutePrefs fills.
func routePartsEqual(a, b osnet.Config) bool {
	return slices.Equal(a.SubnetRoutes, b.SubnetRoutes) && slices.Equal(a.AdvertiseRoutes, b.AdvertiseRoutes) &&
		a.ExitNode == b.ExitNode && a.ExitNodeAllowLAN == b.ExitNodeAllowLAN &&
		a.AdvertiseExitNode == b.AdvertiseExitNode && a.NoSNATSubnetRoutes == b.NoSNATSubnetRoutes
}

// routeHealth lists what keeps the routing preferences from working:
// host problems osnet found (forwarding it could not turn on), an exit
// node that does not resolve, and offers still waiting for approval.
func (e *Engine) routeHealth(nm *controlclient.NetMap) []string {
	out := e.router.Warnings()
	e.mu.Lock()
	rp, known := e.rs.prefs, e.rs.exitKnown
	e.mu.Unlock()
	if nm == nil || nm.Self == nil {
		return out
	}
	if rp.ExitNode != "" && known == "" {
		msg := "exit node " + rp.ExitNode + " is not usable"
		if _, err := rp.ResolveExitNode(nm); err != nil {
			msg += " (" + err.Error() + ")"
		}
		out = append(out, msg+": internet traffic is held back; `weft set --exit-node=` stops using it")
	}
	if rp.AdvertiseExitNode && !slices.ContainsFunc(nm.Self.Routes, tailnet.IsExitRoute) {
		out = append(out, fmt.Sprintf("this node offers itself as exit node, not yet approved: on the server run `weft admin routes approve %s exit`", nm.Self.Name))
	}
	var subnets []string
	for _, r := range rp.AdvertiseRoutes {
		if !slices.Contains(nm.Self.Routes, r) {
			subnets = append(subnets, r.String())
		}
	}
	if len(subnets) > 0 {
		list := strings.Join(subnets, ",")
		out = append(out, fmt.Sprintf("this node offers %s, not yet approved: on the server run `weft admin routes approve %s %s`", list, nm.Self.Name, list))
	}
	return out
}

// endpointFilter returns a function that removes from a peer's record the
// endpoints this node could only reach through the tunnel itself: those
// inside a subnet route it accepts, unless the host is directly connected
// to that network (then the host's own route wins, see osnet). weft's
// marked sockets follow the main table, where accepted subnet routes point
// into the TUN, so a disco ping to a subnet router's LAN address would
// travel inside the tunnel it is meant to set up, and the router would
// learn this node's tailnet address as a "direct" path and loop.
func endpointFilter(nm *controlclient.NetMap, rp node.RoutePrefs, local []netip.Prefix) func(*wire.Node) *wire.Node {
	routes := tunneledRoutes(nm, rp, local)
	return func(n *wire.Node) *wire.Node {
		if len(routes) == 0 {
			return n
		}
		keep := slices.DeleteFunc(slices.Clone(n.Endpoints), func(ep netip.AddrPort) bool {
			return slices.ContainsFunc(routes, func(r netip.Prefix) bool { return r.Contains(ep.Addr().Unmap()) })
		})
		if len(keep) == len(n.Endpoints) {
			return n
		}
		c := *n
		c.Endpoints = keep
		return &c
	}
}

// reachableFilter is endpointFilter for the engine's host; it also tells
// guardedBind which destinations to refuse, since a peer can still name
// such an endpoint in a call-me-maybe.
//
// On Linux nothing is filtered: accepted subnet routes live in weft's own
// routing table, which weft's marked sockets skip (osnet.OwnSubnetTable),
// so such an endpoint is reached over the physical network like any other.
func (e *Engine) reachableFilter(nm *controlclient.NetMap, rp node.RoutePrefs) func(*wire.Node) *wire.Node {
	if osnet.OwnSubnetTable {
		e.rs.tunneled.Store(nil)
		return func(n *wire.Node) *wire.Node { return n }
	}
	local := localPrefixes(e.router.Name())
	routes := tunneledRoutes(nm, rp, local)
	e.rs.tunneled.Store(&routes)
	return endpointFilter(nm, rp, local)
}

// tunneledRoutes are the accepted subnet routes that are routed into the
// TUN (not shadowed by a network the host is on).
func tunneledRoutes(nm *controlclient.NetMap, rp node.RoutePrefs, local []netip.Prefix) []netip.Prefix {
	var routes []netip.Prefix
	if rp.AcceptRoutes {
		var oc osnet.Config
		addRoutePrefs(&oc, nm, rp)
		for _, r := range oc.SubnetRoutes {
			if !slices.Contains(local, r.Masked()) {
				routes = append(routes, r)
			}
		}
	}
	return routes
}

// guardedBind is the main sockets' bind with one refusal: weft's own UDP
// (WireGuard and disco) to an address inside a tunneled subnet route is
// dropped, because it would enter the tunnel it carries. Sends to
// everything else pass unchanged.
type guardedBind struct {
	conn.Bind
	tunneled *atomic.Pointer[[]netip.Prefix]
}

// Send implements conn.Bind.
func (b guardedBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if ps := b.tunneled.Load(); ps != nil && len(*ps) > 0 {
		dst := ep.DstIP().Unmap()
		if slices.ContainsFunc(*ps, func(r netip.Prefix) bool { return r.Contains(dst) }) {
			return nil
		}
	}
	return b.Bind.Send(bufs, ep)
}

// Port6 implements magicsock.IPv6Porter for an inner bind that does; 0
// otherwise (the Conn then takes Open's port for IPv6 too).
func (b guardedBind) Port6() uint16 {
	if pp, ok := b.Bind.(magicsock.IPv6Porter); ok {
		return pp.Port6()
	}
	return 0
}

// WakeReads implements magicsock.ReadWaker for an inner bind that does
// (macOS's, whose sockets a wake-up datagram over loopback may not
// reach); false otherwise (the Conn then sends the datagram).
func (b guardedBind) WakeReads() bool {
	w, ok := b.Bind.(magicsock.ReadWaker)
	return ok && w.WakeReads()
}

// NewBind implements magicsock.Network with guardedBind around the host's
// bind.
func (n hostNetwork) NewBind() conn.Bind {
	inner := n.HostNetwork.NewBind()
	if n.tunneled == nil {
		return inner
	}
	return guardedBind{Bind: inner, tunneled: n.tunneled}
}

// localPrefixes are the networks the host's interfaces other than the TUN
// are directly connected to.
func localPrefixes(tun string) []netip.Prefix {
	var out []netip.Prefix
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, ifc := range ifs {
		if ifc.Name == tun {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ip, ok := netip.AddrFromSlice(ipn.IP)
				ones, _ := ipn.Mask.Size()
				if ok {
					out = append(out, netip.PrefixFrom(ip.Unmap(), ones).Masked())
				}
			}
		}
	}
	return out
}

package controlclient

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"weft/internal/localapi"
	"weft/internal/nodestate"
	"weft/internal/wire"
)

// ExitRoutes are the prefixes an exit node offers: everything.
var ExitRoutes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// RoutePrefs are the preferences the data plane acts on: what this node
// forwards for others and which of the peers' routes it uses.
type RoutePrefs struct {
	AdvertiseExitNode  bool
	AdvertiseRoutes    []netip.Prefix
	NoSNATSubnetRoutes bool
	// ExitNode names the exit node as the user gave it; the data plane
	// resolves it against each map with ResolveExitNode.
	ExitNode         string
	ExitNodeAllowLAN bool
	AcceptRoutes     bool
}

// PrefsEngine is implemented by an Engine that acts on routing
// preferences. The daemon calls SetRoutePrefs when the engine starts and
// after every change; it must not block for long.
type PrefsEngine interface {
	SetRoutePrefs(RoutePrefs)
}

var _ localapi.PrefsEditor = (*Daemon)(nil)

func routePrefs(p nodestate.Prefs) RoutePrefs {
	return RoutePrefs{
		AdvertiseExitNode:  p.AdvertiseExitNode,
		AdvertiseRoutes:    slices.Clone(p.AdvertiseRoutes),
		NoSNATSubnetRoutes: p.NoSNATSubnetRoutes,
		ExitNode:           p.ExitNode,
		ExitNodeAllowLAN:   p.ExitNodeAllowLAN,
		AcceptRoutes:       p.AcceptRoutes,
	}
}

func publicPrefs(p nodestate.Prefs) *localapi.Prefs {
	return &localapi.Prefs{
		AdvertiseExitNode: p.AdvertiseExitNode,
		AdvertiseRoutes:   slices.Clone(p.AdvertiseRoutes),
		SNATSubnetRoutes:  !p.NoSNATSubnetRoutes,
		ExitNode:          p.ExitNode,
		ExitNodeAllowLAN:  p.ExitNodeAllowLAN,
		AcceptRoutes:      p.AcceptRoutes,
	}
}

// AdvertisedRoutes is what a node with preferences p offers the tailnet:
// both default routes for an exit node, then its subnets.
func AdvertisedRoutes(p nodestate.Prefs) []netip.Prefix {
	var out []netip.Prefix
	if p.AdvertiseExitNode {
		out = append(out, ExitRoutes...)
	}
	for _, r := range p.AdvertiseRoutes {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// SetAdvertisedRoutes changes the routes the node offers and sends them
// if a stream is up (otherwise they go with the next map request).
func (c *Client) SetAdvertisedRoutes(routes []netip.Prefix) {
	routes = slices.Clone(routes)
	if routes == nil {
		routes = []netip.Prefix{}
	}
	c.mu.Lock()
	c.routes = routes
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		if err := wire.WriteMessage(conn, wire.MsgUpdate, &wire.Update{HomeRegion: -1, AdvertisedRoutes: &routes}); err != nil {
			c.log.Debug("sending advertised routes", "err", err)
		}
	}
}

// CheckAdvertisedRoute says, in words for the user, why p cannot be
// offered with --advertise-routes, or returns nil.
func CheckAdvertisedRoute(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("invalid route prefix")
	case p.Addr().Zone() != "" || p.Addr().Is4In6():
		return fmt.Errorf("route %v: use a plain IPv4 or IPv6 prefix", p)
	case p.Bits() == 0:
		return fmt.Errorf("route %v is a default route: to offer this node as an exit node use --advertise-exit-node", p)
	case p.Masked() != p:
		return fmt.Errorf("route %v has host bits set; did you mean %v?", p, p.Masked())
	case p.Overlaps(tailnetV4):
		return fmt.Errorf("route %v overlaps the tailnet's own addresses (%v); peers reach those through weft already", p, tailnetV4)
	}
	return nil
}

// tailnetV4 is the range tailnet addresses come from.
var tailnetV4 = netip.MustParsePrefix("100.64.0.0/10")

// Why an exit node cannot be used, for callers that react to it; the
// errors wrapping them say what to do.
var (
	ErrExitNodeNotFound  = errors.New("no such exit node")
	ErrNotAnExitNode     = errors.New("not an exit node")
	ErrExitNodeOffline   = errors.New("exit node offline")
	ErrExitNodeIsSelf    = errors.New("exit node is this node")
	ErrExitNodeNeedsAMap = errors.New("no peer map yet")
)

// ResolveExitNode finds the exit node a user named, by node name or by a
// tailnet address, in nm. The peer must offer an approved exit route (its
// Routes hold a default route); being online is not required here, since
// a selected exit node that goes offline stays selected (traffic waits for
// it rather than leaking around it).
func ResolveExitNode(nm *NetMap, name string) (*wire.Node, error) {
	if nm == nil || nm.Self == nil {
		return nil, fmt.Errorf("%w: the node has not received its peer map yet; wait for `weft status` to show the peers and try again", ErrExitNodeNeedsAMap)
	}
	addr, aerr := netip.ParseAddr(name)
	match := func(n *wire.Node) bool {
		if n.Name == name {
			return true
		}
		if aerr == nil {
			for _, a := range n.Addresses {
				if a.Addr() == addr {
					return true
				}
			}
		}
		return false
	}
	if match(nm.Self) {
		return nil, fmt.Errorf("%w: %q is this node; choose a peer as exit node", ErrExitNodeIsSelf, name)
	}
	for _, n := range nm.SortedPeers() {
		if !match(n) {
			continue
		}
		if !slices.ContainsFunc(n.Routes, func(p netip.Prefix) bool { return p.Bits() == 0 }) {
			return nil, fmt.Errorf("%w: %s does not offer itself as an exit node, or an administrator has not approved it yet: "+
				"run `weft set --advertise-exit-node` on %s, then `weft admin routes approve %s exit` on the server", ErrNotAnExitNode, n.Name, n.Name, n.Name)
		}
		return n, nil
	}
	return nil, fmt.Errorf("%w: no peer in the tailnet is named or has the address %q; `weft exit-node list` shows the exit nodes", ErrExitNodeNotFound, name)
}

// applyEdit applies edit to p. With nm set, a newly chosen exit node must
// resolve in it and be online; with nm nil that check is left to the
// caller (the first map is not there yet).
func applyEdit(p *nodestate.Prefs, edit *localapi.PrefsEdit, nm *NetMap) error {
	if edit.IsEmpty() {
		return nil
	}
	q := *p
	if edit.AdvertiseExitNode != nil {
		q.AdvertiseExitNode = *edit.AdvertiseExitNode
	}
	if edit.AdvertiseRoutes != nil {
		var routes []netip.Prefix
		for _, r := range *edit.AdvertiseRoutes {
			if err := CheckAdvertisedRoute(r); err != nil {
				return err
			}
			if !slices.Contains(routes, r) {
				routes = append(routes, r)
			}
		}
		q.AdvertiseRoutes = routes
	}
	if edit.SNATSubnetRoutes != nil {
		q.NoSNATSubnetRoutes = !*edit.SNATSubnetRoutes
	}
	if edit.ExitNodeAllowLAN != nil {
		q.ExitNodeAllowLAN = *edit.ExitNodeAllowLAN
	}
	if edit.AcceptRoutes != nil {
		q.AcceptRoutes = *edit.AcceptRoutes
	}
	if edit.ExitNode != nil {
		q.ExitNode = *edit.ExitNode
		if q.ExitNode != "" && nm != nil {
			if err := checkExitNode(nm, q.ExitNode); err != nil {
				return err
			}
		}
	}
	*p = q
	return nil
}

// checkExitNode is ResolveExitNode plus the check a user wants when
// choosing: the exit node is online now.
func checkExitNode(nm *NetMap, name string) error {
	n, err := ResolveExitNode(nm, name)
	if err != nil {
		return err
	}
	if !n.Online {
		return fmt.Errorf("%w: %s is offline; choose it once it is back (see `weft exit-node list`)", ErrExitNodeOffline, n.Name)
	}
	return nil
}

// EditPrefs changes some preferences, saves them and puts them into
// effect at once: the server hears of a changed offer, the data plane
// gets the new exit node and routes.
func (d *Daemon) EditPrefs(ctx context.Context, edit localapi.PrefsEdit) (*localapi.Prefs, error) {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.mu.Lock()
	p, nm := d.prefs, d.nm
	d.mu.Unlock()
	if edit.ExitNode != nil && *edit.ExitNode != "" && nm == nil {
		return nil, fmt.Errorf("%w: run `weft up` first, then choose an exit node", ErrExitNodeNeedsAMap)
	}
	if err := applyEdit(&p, &edit, nm); err != nil {
		return nil, err
	}
	if err := d.setPrefs(p); err != nil {
		return nil, err
	}
	return publicPrefs(p), nil
}

// setPrefs saves p and hands it to the running client and data plane.
// d.opMu is held.
func (d *Daemon) setPrefs(p nodestate.Prefs) error {
	d.mu.Lock()
	old := d.prefs
	d.prefs = p
	err := d.st.SavePrefs(p)
	c := d.client
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if c != nil && !slices.Equal(AdvertisedRoutes(old), AdvertisedRoutes(p)) {
		c.SetAdvertisedRoutes(AdvertisedRoutes(p))
	}
	d.pushRoutePrefs()
	return nil
}

// pushRoutePrefs hands the current preferences to the data plane, if it
// runs and acts on them.
func (d *Daemon) pushRoutePrefs() {
	d.mu.Lock()
	rp := routePrefs(d.prefs)
	pe, _ := d.engine.(PrefsEngine)
	d.mu.Unlock()
	if pe != nil {
		pe.SetRoutePrefs(rp)
	}
}

// checkExitAfterUp checks an exit node chosen with `weft up --exit-node`
// once the first map is there. If it does not resolve, the choice is
// undone (the node stays up without an exit node) and the error says why.
// d.opMu is held.
func (d *Daemon) checkExitAfterUp(edit *localapi.PrefsEdit, c *Client) error {
	if edit == nil || edit.ExitNode == nil || *edit.ExitNode == "" {
		return nil
	}
	err := checkExitNode(c.NetMap(), *edit.ExitNode)
	if err == nil {
		return nil
	}
	d.mu.Lock()
	p := d.prefs
	d.mu.Unlock()
	p.ExitNode = ""
	if serr := d.setPrefs(p); serr != nil {
		return errors.Join(err, serr)
	}
	return fmt.Errorf("the node is up, but without an exit node: %w", err)
}

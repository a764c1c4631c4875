package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/nodestate"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

// RoutePrefs are the preferences the data plane acts on: what this node
// forwards for others and which of the peers' routes it uses.
type RoutePrefs struct {
	AdvertiseExitNode  bool
	AdvertiseRoutes    []netip.Prefix
	NoSNATSubnetRoutes bool
	// ExitNodeID is the chosen exit node by stable node ID, and ExitNode
	// its name as last seen (or, while ExitNodeID is zero, as the user
	// gave it); the data plane resolves them against each map with
	// ResolveExitNode.
	ExitNodeID       wire.NodeID
	ExitNode         string
	ExitNodeAllowLAN bool
	AcceptRoutes     bool
	// AcceptDNS points the OS's resolver at weft's when the tailnet has
	// MagicDNS on.
	AcceptDNS bool
}

// PrefsEngine is implemented by an Engine that acts on routing
// preferences. The daemon calls SetRoutePrefs when the engine starts and
// after every change; it must not block for long.
type PrefsEngine interface {
	SetRoutePrefs(RoutePrefs)
}

var _ localapi.PrefsEditor = (*Daemon)(nil)

// ResolveExitNode finds the chosen exit node in nm: by its node ID once
// known, so that a rename keeps it, else by the name or address the user
// gave.
func (rp RoutePrefs) ResolveExitNode(nm *controlclient.NetMap) (*wire.Node, error) {
	return resolveExit(nm, rp.ExitNodeID, rp.ExitNode)
}

func resolveExit(nm *controlclient.NetMap, id wire.NodeID, name string) (*wire.Node, error) {
	if id != 0 {
		return controlclient.ExitNodeByID(nm, id, name)
	}
	return controlclient.ResolveExitNode(nm, name)
}

func routePrefs(p nodestate.Prefs) RoutePrefs {
	return RoutePrefs{
		AdvertiseExitNode:  p.AdvertiseExitNode,
		AdvertiseRoutes:    slices.Clone(p.AdvertiseRoutes),
		NoSNATSubnetRoutes: p.NoSNATSubnetRoutes,
		ExitNodeID:         p.ExitNodeID,
		ExitNode:           p.ExitNode,
		ExitNodeAllowLAN:   p.ExitNodeAllowLAN,
		AcceptRoutes:       p.AcceptRoutes,
		AcceptDNS:          !p.NoAcceptDNS,
	}
}

func publicPrefs(p nodestate.Prefs) *localapi.Prefs {
	return &localapi.Prefs{
		AdvertiseExitNode: p.AdvertiseExitNode,
		AdvertiseRoutes:   slices.Clone(p.AdvertiseRoutes),
		SNATSubnetRoutes:  !p.NoSNATSubnetRoutes,
		ExitNode:          p.ExitNode,
		ExitNodeID:        p.ExitNodeID,
		ExitNodeList:      publicExitList(p),
		ExitNodeAuto:      p.ExitNodeAuto,
		ExitNodeAllowLAN:  p.ExitNodeAllowLAN,
		AcceptRoutes:      p.AcceptRoutes,
		AcceptDNS:         !p.NoAcceptDNS,
	}
}

// AdvertisedRoutes is what a node with preferences p offers the tailnet:
// both default routes for an exit node, then its subnets.
func AdvertisedRoutes(p nodestate.Prefs) []netip.Prefix {
	var out []netip.Prefix
	if p.AdvertiseExitNode {
		out = append(out, tailnet.ExitRoutes()...)
	}
	for _, r := range p.AdvertiseRoutes {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// applyEdit applies edit to p. With nm set, a newly chosen exit node must
// resolve in it and be online, and is stored by its node ID; with nm nil
// that check is left to the caller (the first map is not there yet) and
// the name waits in p.ExitNode.
func applyEdit(p *nodestate.Prefs, edit *localapi.PrefsEdit, nm *controlclient.NetMap) error {
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
			if err := tailnet.CheckSubnetRoute(r); err != nil {
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
	if edit.AcceptDNS != nil {
		q.NoAcceptDNS = !*edit.AcceptDNS
	}
	if edit.ExitNode != nil {
		if err := applyExitEdit(&q, *edit.ExitNode, nm); err != nil {
			return err
		}
	}
	*p = q
	return nil
}

// checkExitNode is ResolveExitNode plus the check a user wants when
// choosing: the exit node is online now.
func checkExitNode(nm *controlclient.NetMap, name string) (*wire.Node, error) {
	n, err := controlclient.ResolveExitNode(nm, name)
	if err != nil {
		return nil, err
	}
	if !n.Online {
		return nil, fmt.Errorf("%w: %s is offline; choose it once it is back (see `weft exit-node list`)", controlclient.ErrExitNodeOffline, n.Name)
	}
	return n, nil
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
		return nil, fmt.Errorf("%w: run `weft up` first, then choose an exit node", controlclient.ErrExitNodeNeedsAMap)
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
func (d *Daemon) checkExitAfterUp(edit *localapi.PrefsEdit, c *controlclient.Client) error {
	if edit == nil || edit.ExitNode == nil || *edit.ExitNode == "" {
		return nil
	}
	d.mu.Lock()
	p := d.prefs
	d.mu.Unlock()
	nm := c.NetMap()
	err := applyExitEdit(&p, *edit.ExitNode, nm)
	if err == nil && nm == nil {
		_, err = controlclient.ResolveExitNode(nil, *edit.ExitNode) // says a map is needed
	}
	if err == nil {
		return d.setPrefs(p)
	}
	p.ExitNode, p.ExitNodeID, p.ExitNodeList, p.ExitNodeAuto = "", 0, nil, false
	if serr := d.setPrefs(p); serr != nil {
		return errors.Join(err, serr)
	}
	return fmt.Errorf("the node is up, but without an exit node: %w", err)
}

// exitHealth is the health line for a chosen exit node that is in the map
// but offline: internet traffic waits for it (it never leaks around it),
// so the web seems down, and the user needs to know why and what to do.
// An exit node that does not resolve at all is the data plane's line.
func exitHealth(p nodestate.Prefs, nm *controlclient.NetMap) string {
	if nm == nil || (p.ExitNodeID == 0 && p.ExitNode == "") {
		return ""
	}
	n, err := resolveExit(nm, p.ExitNodeID, p.ExitNode)
	if err != nil || n.Online {
		return ""
	}
	msg := "exit node " + n.Name + " is offline"
	if !n.LastSeen.IsZero() {
		msg += " (last seen " + n.LastSeen.UTC().Format(time.RFC3339) + ")"
	}
	if p.ExitNodeAuto || len(p.ExitNodeList) > 1 {
		return msg + ": internet traffic waits; the failover moves to another exit node as soon as one answers (see `weft exit-node list`)"
	}
	return msg + ": internet traffic is held back until it returns; choose another with `weft set --exit-node NAME` " +
		"(see `weft exit-node list`), or stop using one with `weft set --exit-node=`"
}

package localapi

import (
	"context"
	"net/http"
	"net/netip"

	"weft/internal/wire"
)

// Prefs are the routing preferences a user sets with `weft up` and
// `weft set`, as the daemon reports them in Status.
type Prefs struct {
	// AdvertiseExitNode offers this node as an exit node.
	AdvertiseExitNode bool `json:"advertise_exit_node"`
	// AdvertiseRoutes are the subnets this node offers to route.
	AdvertiseRoutes []netip.Prefix `json:"advertise_routes,omitempty"`
	// SNATSubnetRoutes masquerades traffic forwarded into
	// AdvertiseRoutes (the default).
	SNATSubnetRoutes bool `json:"snat_subnet_routes"`
	// ExitNode is the chosen exit node's name (as last seen: a rename
	// shows at the next map); empty for none.
	ExitNode string `json:"exit_node,omitempty"`
	// ExitNodeID is the chosen exit node's stable node ID, which the
	// choice is kept by; zero for none or before the first map.
	ExitNodeID wire.NodeID `json:"exit_node_id,omitempty"`
	// ExitNodeList is the failover list, in order of preference, and
	// ExitNodeAuto the choice by latency; with either, ExitNode is the
	// exit node the daemon picked (docs/exit-nodes.md).
	ExitNodeList []string `json:"exit_node_list,omitempty"`
	ExitNodeAuto bool     `json:"exit_node_auto,omitempty"`
	// ExitNodeAllowLAN keeps the local LAN direct while an exit node is
	// in use.
	ExitNodeAllowLAN bool `json:"exit_node_allow_lan"`
	// AcceptRoutes uses peers' approved subnet routes.
	AcceptRoutes bool `json:"accept_routes"`
	// AcceptDNS points the OS's resolver at weft's (MagicDNS).
	AcceptDNS bool `json:"accept_dns"`
}

// PrefsEdit changes some preferences: a nil field is left as it is, so
// `weft set --accept-routes` changes nothing else. A pointer to "" in
// ExitNode clears the exit node; "auto" asks for the fastest approved one,
// and names separated by commas give a failover list.
type PrefsEdit struct {
	AdvertiseExitNode *bool           `json:"advertise_exit_node,omitempty"`
	AdvertiseRoutes   *[]netip.Prefix `json:"advertise_routes,omitempty"`
	SNATSubnetRoutes  *bool           `json:"snat_subnet_routes,omitempty"`
	ExitNode          *string         `json:"exit_node,omitempty"`
	ExitNodeAllowLAN  *bool           `json:"exit_node_allow_lan,omitempty"`
	AcceptRoutes      *bool           `json:"accept_routes,omitempty"`
	AcceptDNS         *bool           `json:"accept_dns,omitempty"`
}

// IsEmpty reports whether the edit changes nothing.
func (e *PrefsEdit) IsEmpty() bool {
	return e == nil || (e.AdvertiseExitNode == nil && e.AdvertiseRoutes == nil && e.SNATSubnetRoutes == nil &&
		e.ExitNode == nil && e.ExitNodeAllowLAN == nil && e.AcceptRoutes == nil && e.AcceptDNS == nil)
}

// PrefsEditor is implemented by a Backend whose preferences can change
// while it runs; Handler serves POST /set only for such a Backend.
type PrefsEditor interface {
	// EditPrefs applies the edit, saves it and puts it into effect, and
	// returns the preferences now in force. An invalid edit (an unknown
	// exit node, a bad route) changes nothing and says why.
	EditPrefs(ctx context.Context, edit PrefsEdit) (*Prefs, error)
}

// handlePrefs adds POST /set to mux if b can edit its preferences.
func handlePrefs(mux *http.ServeMux, b Backend, reply func(http.ResponseWriter, any, error)) {
	pe, ok := b.(PrefsEditor)
	if !ok {
		return
	}
	handleJSON(mux, "POST /set", 256<<10, reply, pe.EditPrefs)
}

// EditPrefs asks the daemon to change some preferences and returns those
// in force afterwards.
func (c *Client) EditPrefs(ctx context.Context, edit PrefsEdit) (*Prefs, error) {
	var p Prefs
	if err := c.do(ctx, http.MethodPost, "/set", edit, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Package wgcfg turns a peer map into WireGuard configuration and computes
// the smallest wireguard-go UAPI change from one configuration to the next,
// so that a new peer map never restarts the device or resets sessions of
// peers that did not change.
package wgcfg

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"weft/internal/key"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

// Peer is one WireGuard peer.
type Peer struct {
	PublicKey  key.NodePublic
	AllowedIPs []netip.Prefix // sorted, no duplicates
	// Endpoint is the string handed to the Bind's ParseEndpoint; weft's
	// Bind resolves the peer's current best path itself, so this names the
	// peer, not an address.
	Endpoint string
	// PersistentKeepalive in seconds; 0 is off.
	PersistentKeepalive int
}

// Config is a whole WireGuard device configuration.
type Config struct {
	PrivateKey key.NodePrivate
	Peers      []Peer // sorted by PublicKey text
}

// Options say which optional routes the node has chosen to use.
type Options struct {
	// AcceptRoutes installs peers' approved subnet routes.
	AcceptRoutes bool
	// ExitNode is the peer all non-tailnet traffic goes to; zero for none.
	ExitNode key.NodePublic
	// EndpointFor gives the endpoint string for a peer. If nil, the node
	// key's text form is used.
	EndpointFor func(key.NodePublic) string
}

// FromNetmap builds the device configuration for a node with private key
// priv and the given peers. WireGuard routes each prefix to exactly one
// peer, so a prefix offered by several peers (two subnet routers for one
// LAN) goes to the first in node-key order, and a peer's own addresses
// always win over another peer's route.
func FromNetmap(priv key.NodePrivate, peers []wire.Node, opts Options) Config {
	cfg := Config{PrivateKey: priv}
	sorted := slices.Clone(peers)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].NodeKey.String() < sorted[j].NodeKey.String() })
	claimed := map[netip.Prefix]bool{}
	for _, n := range sorted {
		for _, a := range n.Addresses {
			claimed[a.Masked()] = true
		}
	}
	for _, n := range sorted {
		if n.NodeKey.IsZero() {
			continue
		}
		p := Peer{PublicKey: n.NodeKey}
		if opts.EndpointFor != nil {
			p.Endpoint = opts.EndpointFor(n.NodeKey)
		} else {
			p.Endpoint = n.NodeKey.String()
		}
		p.AllowedIPs = append(p.AllowedIPs, n.Addresses...)
		for _, r := range n.Routes {
			r = r.Masked()
			if claimed[r] {
				continue
			}
			use := false
			switch {
			case tailnet.IsExitRoute(r):
				use = !opts.ExitNode.IsZero() && opts.ExitNode == n.NodeKey
			case opts.AcceptRoutes:
				use = true
			}
			if use {
				claimed[r] = true
				p.AllowedIPs = append(p.AllowedIPs, r)
			}
		}
		p.AllowedIPs = normalize(p.AllowedIPs)
		cfg.Peers = append(cfg.Peers, p)
	}
	return cfg
}

func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

func hexKey(b [32]byte) string { return hex.EncodeToString(b[:]) }

// UAPI returns the wireguard-go IpcSet text that changes a device
// configured as old into one configured as c. With old nil it returns the
// full configuration (replacing any peers). Peers whose settings did not
// change are not mentioned, so their sessions are untouched.
func (c Config) UAPI(old *Config) string {
	var b strings.Builder
	if old == nil || old.PrivateKey != c.PrivateKey {
		fmt.Fprintf(&b, "private_key=%s\n", hexKey(c.PrivateKey.Raw32()))
	}
	if old == nil {
		b.WriteString("replace_peers=true\n")
	}
	prev := map[key.NodePublic]Peer{}
	if old != nil {
		for _, p := range old.Peers {
			prev[p.PublicKey] = p
		}
	}
	for _, p := range c.Peers {
		o, existed := prev[p.PublicKey]
		delete(prev, p.PublicKey)
		if existed && peerEqual(o, p) {
			continue
		}
		fmt.Fprintf(&b, "public_key=%s\n", hexKey(p.PublicKey.Raw32()))
		if !existed || o.Endpoint != p.Endpoint {
			fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint)
		}
		if !existed || o.PersistentKeepalive != p.PersistentKeepalive {
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", p.PersistentKeepalive)
		}
		// Allowed IPs change by difference, so routes that stay never
		// disappear, not even for an instant.
		had := map[netip.Prefix]bool{}
		for _, a := range o.AllowedIPs {
			had[a] = true
		}
		for _, a := range p.AllowedIPs {
			if !had[a] {
				fmt.Fprintf(&b, "allowed_ip=%s\n", a)
			}
			delete(had, a)
		}
		for _, a := range o.AllowedIPs {
			if had[a] {
				fmt.Fprintf(&b, "allowed_ip=-%s\n", a)
			}
		}
	}
	gone := make([]key.NodePublic, 0, len(prev))
	for k := range prev {
		gone = append(gone, k)
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].String() < gone[j].String() })
	for _, k := range gone {
		fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hexKey(k.Raw32()))
	}
	return b.String()
}

func peerEqual(a, b Peer) bool {
	return a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint &&
		a.PersistentKeepalive == b.PersistentKeepalive && slices.Equal(a.AllowedIPs, b.AllowedIPs)
}

package osnet

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"

	"weft/internal/tailnet"
)

// Defaults for Options.
const (
	DefaultTUNName = "weft0"
	// DefaultMTU is IPv6's minimum link MTU. The tailnet carries IPv6, so
	// it cannot go lower, and with WireGuard's 80 bytes of overhead over
	// IPv6 (60 over IPv4) a 1280-byte packet still fits unfragmented in
	// every path a home node meets: PPPoE (1492), DS-Lite (1460), mobile
	// carriers and nested tunnels. A larger MTU would buy a few percent
	// of throughput at the price of black-holed packets on such paths.
	DefaultMTU = 1280
	// DefaultMark is the SO_MARK weft's own sockets carry; only the bits in
	// DefaultMarkMask are compared, so other software may use the rest.
	DefaultMark     uint32 = 0x57000000
	DefaultMarkMask uint32 = 0xff000000
	// DefaultTable is weft's routing table (0x5746, "WF"); it holds the
	// exit node's default routes and the accepted subnet routes, behind
	// the mark rule that keeps weft's own sockets out of it.
	DefaultTable = 22342
	// DefaultRulePriority is the priority of weft's first policy rule; the
	// second is DefaultRulePriority+1. Both sit well before the main table
	// (32766) and apart from the ranges other VPN software commonly uses.
	DefaultRulePriority = 5740
)

// OwnSubnetTable reports whether accepted subnet routes live in weft's
// own routing table behind the mark rule (Linux), so that weft's marked
// sockets reach a relay, a STUN server or a peer's endpoint inside an
// accepted subnet over the physical network. Elsewhere they are routes on
// the TUN that weft's own sockets would follow into the tunnel.
const OwnSubnetTable = runtime.GOOS == "linux"

// Options fix a Router's device and numbers for its whole life. The zero
// value uses the defaults above.
type Options struct {
	// Logger receives one line per change made to the host. If nil,
	// nothing is logged.
	Logger *slog.Logger
	// TUNName is the TUN device's name; "" means DefaultTUNName.
	TUNName string
	// MTU of the TUN device; 0 means DefaultMTU.
	MTU int
	// Mark and MarkMask are weft's socket mark; 0 means the defaults.
	Mark, MarkMask uint32
	// Table is weft's routing table number; 0 means DefaultTable.
	Table int
	// RulePriority is the first of weft's two rule priorities; 0 means
	// DefaultRulePriority.
	RulePriority int
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.TUNName = cmp.Or(o.TUNName, DefaultTUNName)
	o.MTU = cmp.Or(o.MTU, DefaultMTU)
	o.Mark = cmp.Or(o.Mark, DefaultMark)
	o.MarkMask = cmp.Or(o.MarkMask, DefaultMarkMask)
	o.Table = cmp.Or(o.Table, DefaultTable)
	o.RulePriority = cmp.Or(o.RulePriority, DefaultRulePriority)
	return o
}

// Config is the host network weft wants. The zero Config is "down": no
// addresses, no routes, no rules, no nftables table, forwarding as it was.
type Config struct {
	// Addresses are the node's own tailnet addresses, one IPv4 /32 and one
	// IPv6 /128.
	Addresses []netip.Prefix
	// TailnetRoutes are the tailnet's ranges (100.64.0.0/10 and the
	// tailnet's ULA /48), routed into the TUN.
	TailnetRoutes []netip.Prefix
	// SubnetRoutes are peers' approved subnet routes this node uses
	// (accept-routes); the caller leaves it empty without accept-routes.
	// They are routed into the TUN; WireGuard's allowed IPs pick the peer.
	// Default routes here are ignored: ExitNode decides about those.
	SubnetRoutes []netip.Prefix

	// ExitNode sends all traffic that is not weft's own into the TUN.
	ExitNode bool
	// ExitNodeAllowLAN keeps every more specific route of the main table
	// (the LAN and other directly connected networks) direct while
	// ExitNode is on. Without it LAN traffic goes to the exit node too.
	ExitNodeAllowLAN bool

	// AdvertiseExitNode and AdvertiseRoutes make this node forward for the
	// tailnet: forwarding on, masquerade, MSS clamping.
	AdvertiseExitNode bool
	AdvertiseRoutes   []netip.Prefix
	// NoSNATSubnetRoutes keeps tailnet source addresses on traffic to
	// AdvertiseRoutes (the LAN must then route the tailnet back to this
	// node). Exit-node traffic to the internet is masqueraded regardless.
	NoSNATSubnetRoutes bool
}

// forwards reports whether cfg makes this node forward for the tailnet.
func (c Config) forwards() bool { return c.AdvertiseExitNode || len(c.AdvertiseRoutes) > 0 }

// normalized returns cfg with prefixes masked, sorted and deduplicated, so
// two Configs that mean the same compare equal.
func (c Config) normalized() (Config, error) {
	var errs []error
	for _, a := range c.Addresses {
		if !a.IsValid() || a.Bits() != a.Addr().BitLen() {
			errs = append(errs, fmt.Errorf("address %s is not a single address (/32 or /128)", a))
		}
	}
	c.Addresses = normPrefixes(c.Addresses, false)
	c.TailnetRoutes = normPrefixes(c.TailnetRoutes, true)
	c.SubnetRoutes = slices.DeleteFunc(normPrefixes(c.SubnetRoutes, true), tailnet.IsExitRoute)
	c.AdvertiseRoutes = normPrefixes(c.AdvertiseRoutes, true)
	for _, ps := range [][]netip.Prefix{c.TailnetRoutes, c.SubnetRoutes, c.AdvertiseRoutes} {
		for _, p := range ps {
			if !p.IsValid() {
				errs = append(errs, errors.New("invalid route prefix"))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("osnet: invalid config: %w", err)
	}
	return c, nil
}

func normPrefixes(ps []netip.Prefix, mask bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if mask {
			p = p.Masked()
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("osnet: router closed")

// ErrInUse means another weft daemon is alive in this network namespace:
// Cleanup leaves its state alone and the caller must not start.
var ErrInUse = errors.New("osnet: weft is running")

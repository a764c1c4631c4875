package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"weft/internal/tailnet"
)

// ErrDown is returned by Dialer for a tailnet destination while the node
// has no data plane.
var ErrDown = errors.New("netstack: weft is not up, so tailnet addresses cannot be reached (run weft up)")

// Dialer is what the daemon's proxies dial through. It outlives any one
// Stack: the daemon sets the current stack each time the node goes up.
// Tailnet addresses, accepted subnet routes and, while an exit node is in
// use, everything else go through the stack; the rest is dialed from the
// host as usual.
type Dialer struct {
	// Host dials what does not go through the tunnel; nil means a plain
	// net.Dialer.
	Host HostDialer
	// Resolver resolves names that are not IP literals; nil means the
	// host's resolver.
	Resolver *net.Resolver

	cur atomic.Pointer[Stack]
}

// Set makes s the stack dials go through (nil: none, the node is down).
func (d *Dialer) Set(s *Stack) { d.cur.Store(s) }

// DialContext dials network ("tcp", "tcp4", "tcp6", "udp", "udp4",
// "udp6") to address (host:port, host a name or an IP literal).
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial %s: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial %s: bad port %q", address, portStr)
	}
	s := d.cur.Load()
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if ip, err = d.resolve(ctx, s, host); err != nil {
			return nil, err
		}
	}
	ip = ip.Unmap()
	dst := netip.AddrPortFrom(ip, uint16(port))
	if s == nil {
		if tailnet.V4Range.Contains(ip) {
			return nil, ErrDown
		}
	} else if s.viaTunnel(ip) {
		return s.Dial(ctx, network, dst)
	}
	h := d.Host
	if h == nil {
		h = plainDialer{}
	}
	return h.DialContext(ctx, network, dst.String())
}

// resolve finds host's address: from the tailnet's names (MagicDNS)
// while s is up and knows them, else from the host's resolver. An IPv4
// address is preferred, as the tunnel always has one.
func (d *Dialer) resolve(ctx context.Context, s *Stack, host string) (netip.Addr, error) {
	if s != nil {
		if names := s.names.Load(); names != nil {
			if addrs, ok := (*names)(host); ok {
				if len(addrs) == 0 {
					return netip.Addr{}, fmt.Errorf("netstack: resolve %s: no such name in the tailnet (MagicDNS); `weft status` lists the nodes", host)
				}
				if i := slices.IndexFunc(addrs, netip.Addr.Is4); i >= 0 {
					return addrs[i], nil
				}
				return addrs[0], nil
			}
		}
	}
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("netstack: resolve %s: %w", host, err)
	}
	return ips[0], nil
}

// NamesFunc resolves a tailnet name to its addresses; ok is false when
// the name is not the tailnet's (see agent.Engine.LookupName).
type NamesFunc func(name string) (addrs []netip.Addr, ok bool)

// SetNames gives the stack the tailnet's names, which Dialer resolves
// first while this stack is current; nil removes them.
func (s *Stack) SetNames(f NamesFunc) {
	if f == nil {
		s.names.Store(nil)
		return
	}
	s.names.Store(&f)
}

// viaTunnel reports whether traffic to dst belongs in the tunnel.
func (s *Stack) viaTunnel(dst netip.Addr) bool {
	cfg := s.cfg.Load()
	if dst.IsLoopback() || dst.IsUnspecified() {
		return false
	}
	in := func(ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(dst) })
	}
	return tailnet.V4Range.Contains(dst) || in(cfg.TailnetRoutes) || in(cfg.SubnetRoutes) || cfg.ExitNode
}

// Dial opens a connection from the node's tailnet address to dst through
// the tunnel.
func (s *Stack) Dial(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	fa := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(dst.Addr().AsSlice()), Port: dst.Port()}
	proto := ipv4.ProtocolNumber
	if dst.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := gonet.DialContextTCP(ctx, s.st, fa, proto)
		if err != nil {
			return nil, fmt.Errorf("netstack: dial %s through the tunnel: %w", dst, err)
		}
		return c, nil
	case "udp", "udp4", "udp6":
		c, err := gonet.DialUDP(s.st, nil, &fa, proto)
		if err != nil {
			return nil, fmt.Errorf("netstack: dial %s through the tunnel: %w", dst, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("netstack: network %q is not supported (tcp or udp)", network)
}

// admit decides whether a packet from the tunnel enters the stack. An
// ICMP echo request to an address that is not the node's own never does:
// the stack would answer it itself (promiscuous mode), telling the peer
// that any host it pings is up. Where this node forwards (exit node,
// subnet route) a ping is forwarded from the host instead (echo.go).
func (s *Stack) admit(pkt []byte) bool {
	var dst netip.Addr
	var echo bool
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < header.IPv4MinimumSize {
			return false
		}
		h := header.IPv4(pkt)
		hl := int(h.HeaderLength())
		dst, _ = netip.AddrFromSlice(h.DestinationAddressSlice())
		echo = h.Protocol() == uint8(header.ICMPv4ProtocolNumber) && len(pkt) > hl &&
			header.ICMPv4(pkt[hl:]).Type() == header.ICMPv4Echo
	case 6:
		if len(pkt) < header.IPv6MinimumSize {
			return false
		}
		h := header.IPv6(pkt)
		dst, _ = netip.AddrFromSlice(h.DestinationAddressSlice())
		echo = h.NextHeader() == uint8(header.ICMPv6ProtocolNumber) && len(pkt) > header.IPv6MinimumSize &&
			header.ICMPv6(pkt[header.IPv6MinimumSize:]).Type() == header.ICMPv6EchoRequest
	default:
		return false
	}
	if !echo {
		return true
	}
	switch decide(s.cfg.Load(), dst) {
	case toLocalhost:
		return true
	case toHost:
		s.forwardEcho(pkt)
	}
	return false
}

// Clear takes s away if it is the current stack.
func (d *Dialer) Clear(s *Stack) { d.cur.CompareAndSwap(s, nil) }

//go:build linux

package netlab

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Interface names inside a router's namespace.
const (
	routerWAN = "wan"
	routerLAN = "lan"
)

// natTable is the nftables table each router's NAT lives in.
const natTable = "weftlab"

// installNAT writes the router's NAT and filter rules into its own
// namespace's nftables:
//
//	postrouting: iifname "lan" oifname "wan" masquerade [fully-random for hard]
//	forward:     iifname "wan" ct state established,related accept
//	             iifname "wan" ct status dnat accept
//	             iifname "wan" drop
//	             [udp-blocked: oifname "wan" meta l4proto udp drop]
//	input:       meta l4proto udp socket transparent 0-1 accept
//	             iifname "wan" meta l4proto udp ct state new drop
//
// Masquerade keeps a LAN socket's source port whenever it is free, which is
// endpoint-independent mapping; conntrack only lets in replies from the
// exact address and port a mapping was made for, which is address-and-port
// dependent filtering. Fully random port selection gives every new
// conntrack entry, so every new destination, a fresh port.
//
// The input rule is what a home router does with unsolicited UDP, and
// hole punching depends on it: a peer's punch that arrives before our own
// outgoing packet would otherwise be delivered to the router itself, and
// the conntrack entry it leaves behind clashes with the mapping our
// outgoing packet needs, so masquerade picks another port and the punch
// never meets. Dropped in input, the entry is never confirmed.
//
// Only traffic from the LAN is masqueraded: the router's own packets
// already carry its WAN address and keep their ports, as a real router's
// do (a port-mapping daemon on the router checks its own public address
// with STUN). What a port mapping (miniupnpd) forwards in was DNATed, and
// the "ct status dnat" rule lets it through.
func installNAT(ns netns.NsHandle, kind NATKind, log *slog.Logger) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("netlab: nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTable})
	post := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t,
		Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: slices.Concat(
		ifaceIs(expr.MetaKeyIIFNAME, routerLAN),
		ifaceIs(expr.MetaKeyOIFNAME, routerWAN),
		[]expr.Any{&expr.Masq{FullyRandom: kind == NATHard}},
	)})
	addForward(c, t, kind, ctStatusDNAT())
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{
		Name: "input", Table: t,
		Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
		Policy: &accept,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: slices.Concat(
		ifaceIs(expr.MetaKeyIIFNAME, routerWAN),
		isUDP(),
		ctStateIn(expr.CtStateBitNEW),
		verdict(expr.VerdictDrop),
	)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netlab: install %s NAT: %w", kind, err)
	}
	// A datagram for a socket open on the router itself (a lab test may
	// run a server there) is not unsolicited: the socket lookup finds it,
	// loads the register and the rule, first in the chain, accepts;
	// without a socket the lookup ends the rule. It goes in a batch of
	// its own because the socket expression needs CONFIG_NFT_SOCKET: a
	// kernel without it keeps the rest of the router, and only a server
	// on a router itself goes unreached.
	c.InsertRule(&nftables.Rule{Table: t, Chain: in, Exprs: slices.Concat(
		isUDP(),
		[]expr.Any{&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1}},
		verdict(expr.VerdictAccept),
	)})
	if err := c.Flush(); err != nil {
		log.Warn("netlab: no accept rule for UDP to a router's own sockets (does the kernel have nft socket?)", "err", err)
	}
	return nil
}

// ifaceIs matches packets whose input or output interface (key
// MetaKeyIIFNAME or MetaKeyOIFNAME) is name.
func ifaceIs(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

// isUDP matches UDP packets.
func isUDP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
	}
}

// ctStateIn matches packets whose conntrack state is one of bits.
func ctStateIn(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ctStatusDNAT matches packets of connections whose destination was
// translated (a port forwarding).
func ctStatusDNAT() []expr.Any {
	const ipsDstNAT = 1 << 5 // IPS_DST_NAT in linux/netfilter/nf_conntrack_common.h
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// verdict ends a rule with kind.
func verdict(kind expr.VerdictKind) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: kind}}
}

// ifname is an interface name as nftables compares it: NUL-padded to
// IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// addForward adds t's forward chain (policy accept), as the IPv4 NAT and
// the IPv6 firewall both filter: from the WAN, what answers a flow the
// LAN opened passes, then what matches one of alsoFromWAN, and nothing
// else; a udp-blocked router (kind) also drops all UDP to the WAN.
func addForward(c *nftables.Conn, t *nftables.Table, kind NATKind, alsoFromWAN ...[]expr.Any) {
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t,
		Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
		Policy: &accept,
	})
	fromWAN := append([][]expr.Any{ctStateIn(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)}, alsoFromWAN...)
	for _, match := range fromWAN {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: slices.Concat(
			ifaceIs(expr.MetaKeyIIFNAME, routerWAN),
			match,
			verdict(expr.VerdictAccept),
		)})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: slices.Concat(
		ifaceIs(expr.MetaKeyIIFNAME, routerWAN),
		verdict(expr.VerdictDrop),
	)})
	if kind == NATUDPBlocked {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: slices.Concat(
			ifaceIs(expr.MetaKeyOIFNAME, routerWAN),
			isUDP(),
			verdict(expr.VerdictDrop),
		)})
	}
}

//go:build linux

package osnet

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NFTableName is weft's own nftables table (family inet). weft never adds
// to, reads rules from, or deletes any other table.
const NFTableName = "weft"

// Chain names inside weft's table.
const (
	chainPostrouting = "postrouting" // nat, srcnat: masquerade
	chainForward     = "forward"     // filter, mangle: TCP MSS clamp
	chainPrerouting  = "prerouting"  // filter, mangle: restore weft's mark on replies
	chainOutput      = "output"      // filter, mangle: remember weft's mark in conntrack
	// flowtableName is the flow table forwarded tailnet connections are
	// offloaded to.
	flowtableName = "offload"
)

// natSpec is the whole desired content of weft's nftables table; the table
// is rebuilt atomically whenever the spec changes and removed when the spec
// is empty.
type natSpec struct {
	// Forward is set when this node forwards for the tailnet (exit node or
	// subnet router): masquerade and MSS clamping.
	Forward bool
	TUN     string
	// Tailnet are the tailnet prefixes: sources that are masqueraded and
	// addresses whose forwarded SYNs get their MSS clamped.
	Tailnet []netip.Prefix
	// NoSNAT are destinations (advertised subnet routes) that keep the
	// tailnet source address.
	NoSNAT []netip.Prefix
	// Offload are the devices of the flow table (the TUN and the host's
	// other interfaces): forwarded tailnet connections, once established,
	// are then forwarded by the kernel's flow table, past the forward
	// and postrouting hooks, with their NAT applied. Empty: no flow table
	// (the kernel has none, or the node does not forward).
	Offload []string
	// MarkReplies is set while an exit node is in use: replies to weft's
	// marked sockets get the mark back from conntrack so strict
	// reverse-path filtering accepts them.
	MarkReplies    bool
	Mark, MarkMask uint32
}

func (s natSpec) empty() bool { return !s.Forward && !s.MarkReplies }

func (s natSpec) equal(o natSpec) bool {
	return s.Forward == o.Forward && s.TUN == o.TUN &&
		slices.Equal(s.Tailnet, o.Tailnet) && slices.Equal(s.NoSNAT, o.NoSNAT) && slices.Equal(s.Offload, o.Offload) &&
		s.MarkReplies == o.MarkReplies && s.Mark == o.Mark && s.MarkMask == o.MarkMask
}

func weftTable() *nftables.Table {
	return &nftables.Table{Name: NFTableName, Family: nftables.TableFamilyINet}
}

// applyNFT replaces weft's table with the one spec describes, in one
// netlink batch: "add table; delete table; add table; ..." is atomic, so
// there is never a moment without masquerading and a stale table from a
// crash is replaced in the same step. An empty spec removes the table.
func applyNFT(c *nftables.Conn, s natSpec) error {
	t := weftTable()
	c.AddTable(t)
	c.DelTable(t)
	if s.empty() {
		if err := c.Flush(); err != nil {
			return fmt.Errorf("osnet: remove nftables table inet %s: %w", NFTableName, err)
		}
		return nil
	}
	c.AddTable(t)
	if s.Forward {
		addForwardChains(c, t, s)
	}
	if s.MarkReplies {
		addMarkChains(c, t, s)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("osnet: install nftables table inet %s: %w", NFTableName, err)
	}
	return nil
}

// deleteNFT removes weft's table if it exists and reports whether it did.
func deleteNFT(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("osnet: list nftables tables: %w", err)
	}
	found := false
	for _, t := range tables {
		if t.Name == NFTableName {
			found = true
		}
	}
	if !found {
		return false, nil
	}
	c.DelTable(weftTable())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("osnet: delete nftables table inet %s: %w", NFTableName, err)
	}
	return true, nil
}

func addForwardChains(c *nftables.Conn, t *nftables.Table, s natSpec) {
	accept := nftables.ChainPolicyAccept
	post := c.AddChain(&nftables.Chain{
		Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept,
	})
	// Traffic to a subnet route keeps its tailnet source when SNAT is off:
	// "return" ends this chain before the masquerade rules below.
	for _, p := range s.NoSNAT {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: slices.Concat(
			matchPrefix(p, false),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}},
		)})
	}
	// Tailnet traffic leaving by any interface but weft's TUN takes this
	// node's address on that interface, so the exit node's WAN address is
	// what the internet sees and replies come back here.
	for _, p := range s.Tailnet {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: slices.Concat(
			matchPrefix(p, true),
			[]expr.Any{
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(s.TUN)},
				&expr.Masq{},
			},
		)})
	}

	fwd := c.AddChain(&nftables.Chain{
		Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityMangle, Policy: &accept,
	})
	// Nothing from this node's other networks enters the tunnel unless it
	// belongs to a connection a tailnet node opened. Without this rule a
	// LAN host that routes the tailnet via this node reaches every client
	// using it as exit node (their allowed IPs for it cover every source)
	// and, on a subnet router, every node that accepts its routes. The
	// drop is counted (Router.IntoTunnelDrops).
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, UserData: []byte(ruleIntoTunnel), Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(s.TUN)},
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(s.TUN)},
		// ct state & (established|related) == 0
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: ne32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(0)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	// Forwarded SYNs to or from the tailnet get their MSS lowered to what
	// the route they take can carry ("rt mtu"): the tunnel's MTU toward the
	// tailnet, the WAN path's toward the internet. The kernel only ever
	// lowers an MSS this way, never raises it.
	for _, p := range s.Tailnet {
		for _, src := range []bool{true, false} {
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: slices.Concat(
				matchPrefix(p, src),
				[]expr.Any{
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
					// tcp flags & (syn|rst) == syn
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02 | 0x04}, Xor: []byte{0}},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
					// tcp option maxseg size set rt mtu
					&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
					&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 2, Size: 2},
					&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
				},
			)})
		}
	}
	addOffload(c, t, fwd, s)
}

// addOffload adds the flow table and, at the end of the forward chain,
// "flow add @offload" for traffic from and to the tailnet. The kernel
// offloads a connection only once conntrack has seen it established (so
// SYNs still get their MSS clamped, and a connection from the LAN into the
// tunnel, dropped at its first packet, never gets there) and only TCP and
// UDP; the flow table then forwards its packets with their NAT, past
// netfilter's hooks, instead of each packet walking conntrack, the chains
// and the masquerade.
func addOffload(c *nftables.Conn, t *nftables.Table, fwd *nftables.Chain, s natSpec) {
	if len(s.Offload) == 0 {
		return
	}
	c.AddFlowtable(&nftables.Flowtable{
		Table: t, Name: flowtableName, Devices: s.Offload,
		Hooknum: nftables.FlowtableHookIngress, Priority: nftables.FlowtablePriorityFilter,
	})
	for _, p := range s.Tailnet {
		for _, src := range []bool{true, false} {
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: slices.Concat(
				matchPrefix(p, src),
				[]expr.Any{&expr.FlowOffload{Name: flowtableName}},
			)})
		}
	}
}

// ruleIntoTunnel tags (in the rule's user data) the forward rule that
// drops packets entering the tunnel from another interface, so its
// counter can be found again.
const ruleIntoTunnel = "weft:into-tunnel"

// readIntoTunnelDrops returns the packets the into-tunnel rule of weft's
// table has dropped since the table was last built; 0 when there is no
// such rule.
func readIntoTunnelDrops(c *nftables.Conn) (uint64, error) {
	rules, err := c.GetRules(weftTable(), &nftables.Chain{Name: chainForward, Table: weftTable()})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		return 0, fmt.Errorf("osnet: read nftables chain %s: %w", chainForward, err)
	}
	for _, r := range rules {
		if string(r.UserData) != ruleIntoTunnel {
			continue
		}
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				return ctr.Packets, nil
			}
		}
	}
	return 0, nil
}

// addMarkChains copies weft's socket mark into conntrack on the way out and
// back onto reply packets on the way in. With the exit-node rules in place
// a reply from a relay or the control server, checked by strict
// reverse-path filtering, would otherwise be judged against the tunnel's
// default route and dropped; with its mark restored (and src_valid_mark on)
// the check uses the same rules as the marked socket that sent it.
func addMarkChains(c *nftables.Conn, t *nftables.Table, s natSpec) {
	accept := nftables.ChainPolicyAccept
	// Each chain loads the mark from one place and, when it is weft's,
	// stores it in the other.
	for _, ch := range []struct {
		name        string
		hook        *nftables.ChainHook
		load, store expr.Any
	}{
		{chainOutput, nftables.ChainHookOutput,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, &expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true}},
		{chainPrerouting, nftables.ChainHookPrerouting,
			&expr.Ct{Key: expr.CtKeyMARK, Register: 1}, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true}},
	} {
		chain := c.AddChain(&nftables.Chain{
			Name: ch.name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: ch.hook, Priority: nftables.ChainPriorityMangle, Policy: &accept,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
			ch.load,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(s.MarkMask), Xor: ne32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(s.Mark)},
			&expr.Immediate{Register: 1, Data: ne32(s.Mark)},
			ch.store,
		}})
	}
}

// matchPrefix matches packets of p's family whose source (src) or
// destination address lies in p.
func matchPrefix(p netip.Prefix, src bool) []expr.Any {
	p = p.Masked()
	addr := p.Addr().AsSlice()
	proto := byte(unix.NFPROTO_IPV4)
	off := uint32(16) // IPv4 destination
	if src {
		off = 12
	}
	if p.Addr().Is6() {
		proto = unix.NFPROTO_IPV6
		off = 24
		if src {
			off = 8
		}
	}
	mask := make([]byte, len(addr))
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(addr))},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
	}
}

// ifname is an interface name as nftables compares it: NUL-padded to
// IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// ne32 is v in host byte order, which is how the kernel holds packet and
// conntrack marks in nftables registers.
func ne32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

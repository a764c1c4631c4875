package agent_test

import (
	"fmt"
	"path/filepath"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"weft/internal/netlab"
)

// dropUnsolicitedUDP gives router an input chain that drops new UDP
// arriving on its WAN, as home routers do. Without it a peer's
// hole-punching packet that reaches the router before our own outgoing
// one is delivered to the router's local input, where conntrack keeps an
// entry for it; our outgoing packet's mapping then clashes with that
// entry and masquerade gives it another port, so the punch never meets.
func dropUnsolicitedUDP(lab *netlab.Lab, router string) error {
	n := lab.Node(router)
	if n == nil {
		return fmt.Errorf("no router %s", router)
	}
	ns, err := netns.GetFromPath(filepath.Join("/run/netns", n.NS))
	if err != nil {
		return err
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "agenttest"})
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{
		Name: "input", Table: t,
		Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
		Policy: &accept,
	})
	wan := make([]byte, 16)
	copy(wan, "wan")
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: wan},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return c.Flush()
}

//go:build linux

package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/pion/stun/v3"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// MiniupnpdPath is where Debian's miniupnpd-nftables package installs the
// port-mapping daemon a router with PortMap runs.
const MiniupnpdPath = "/usr/sbin/miniupnpd"

// portMapSTUNPort is the port of the STUN server the lab runs on a public
// host for miniupnpd: a router's daemon refuses to forward ports until
// STUN has shown that nothing filters in front of its WAN address (the
// lab's public addresses are documentation ranges, which miniupnpd
// otherwise takes for private ones). It is not 3478, which tests use.
const portMapSTUNPort = 3490

// upnpTable is the nftables table miniupnpd writes its rules into.
const upnpTable = "miniupnpd"

// startPortMapping starts a STUN server on the first public host and then
// miniupnpd (UPnP IGD, NAT-PMP and PCP) on every router with PortMap.
func (l *Lab) startPortMapping(ctx context.Context, cfg Config, h *nsHandles, topo Topology) error {
	var routers []Router
	for _, r := range topo.Routers {
		if r.PortMap {
			routers = append(routers, r)
		}
	}
	if len(routers) == 0 {
		return nil
	}
	if _, err := os.Stat(MiniupnpdPath); err != nil {
		return fmt.Errorf("netlab: a router with port mapping needs miniupnpd (apt-get install miniupnpd-nftables): %w", err)
	}
	if len(topo.Public) == 0 || len(cfg.Helper) == 0 {
		return errors.New("netlab: port mapping needs a public host and Config.Helper (the weft binary) for its STUN server")
	}
	pub := l.Node(topo.Public[0].Name)
	stunAddr := netip.AddrPortFrom(pub.WANAddr, portMapSTUNPort)
	argv := []string{cfg.Helper[0], "stun", "--listen", stunAddr.String()}
	if _, err := l.start(ctx, pub, "stun", argv, nil); err != nil {
		return err
	}
	for _, r := range routers {
		n := l.Node(r.Name)
		if err := waitSTUN(ctx, n, stunAddr); err != nil {
			return err
		}
		if err := installUPnPChains(h.ns[r.Name]); err != nil {
			return fmt.Errorf("netlab: %s: %w", r.Name, err)
		}
		if r.NoPCP {
			if err := dropPCP(h.ns[r.Name]); err != nil {
				return fmt.Errorf("netlab: %s: %w", r.Name, err)
			}
		}
		conf := filepath.Join(l.dir, r.Name+".miniupnpd.conf")
		if err := os.WriteFile(conf, []byte(miniupnpdConf(r, stunAddr)), 0o644); err != nil {
			return fmt.Errorf("netlab: %w", err)
		}
		pid := filepath.Join(l.dir, r.Name+".miniupnpd.pid")
		if _, err := l.start(ctx, n, "miniupnpd", []string{MiniupnpdPath, "-d", "-f", conf, "-P", pid}, nil); err != nil {
			return err
		}
		err := waitTCP(ctx, n, netip.AddrPortFrom(gatewayAddr(r.LAN), upnpHTTPPort))
		if err == nil && !r.UPnPOnly {
			err = waitUDP(ctx, n, netip.AddrPortFrom(gatewayAddr(r.LAN), 5351))
		}
		if err != nil {
			return fmt.Errorf("netlab: %s: miniupnpd: %w", r.Name, err)
		}
	}
	return nil
}

// miniupnpdConf is the daemon's configuration for router r: NAT-PMP, PCP
// and UPnP IGD on the LAN, mappings only for a host's own address, and
// the nftables table and chains installUPnPChains made.
func miniupnpdConf(r Router, stunAddr netip.AddrPort) string {
	natpmp := "yes"
	if r.UPnPOnly {
		natpmp = "no"
	}
	return fmt.Sprintf(`# written by weft's network lab
ext_ifname=%s
listening_ip=%s
http_port=%d
enable_natpmp=%s
enable_upnp=yes
secure_mode=yes
ext_perform_stun=yes
ext_stun_host=%s
ext_stun_port=%d
upnp_table_name=%s
upnp_nat_table_name=%s
upnp_forward_chain=forward_miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
uuid=7f1c8a52-4d1e-4b3c-9a57-000000000000
allow 1024-65535 %s 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, routerWAN, routerLAN, upnpHTTPPort, natpmp, stunAddr.Addr(), stunAddr.Port(), upnpTable, upnpTable, r.LAN)
}

// installUPnPChains makes the table miniupnpd adds its rules to: a filter
// chain on forward and NAT chains on prerouting and postrouting, each
// jumping to the chain miniupnpd fills. The router's own filter (natTable)
// lets DNATed packets through, so a mapping needs only these.
func installUPnPChains(ns netns.NsHandle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: upnpTable})
	accept := nftables.ChainPolicyAccept
	hooks := []struct {
		name, inner string
		typ         nftables.ChainType
		hook        *nftables.ChainHook
		prio        *nftables.ChainPriority
	}{
		{"forward", "forward_miniupnpd", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter},
		{"prerouting", "prerouting_miniupnpd", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest},
		{"postrouting", "postrouting_miniupnpd", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource},
	}
	for _, hk := range hooks {
		base := c.AddChain(&nftables.Chain{Name: hk.name, Table: t, Type: hk.typ, Hooknum: hk.hook, Priority: hk.prio, Policy: &accept})
		c.AddChain(&nftables.Chain{Name: hk.inner, Table: t})
		c.AddRule(&nftables.Rule{Table: t, Chain: base, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: hk.inner}}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("miniupnpd's nftables chains: %w", err)
	}
	return nil
}

// dropPCP makes the router drop the UDP datagrams to the NAT-PMP/PCP port
// whose first byte is PCP's version, 2 (NAT-PMP's is 0), in a table of
// its own (Router.NoPCP).
func dropPCP(ns netns.NsHandle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "weftlab_nopcp"})
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, 5351)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{2}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("dropping PCP: %w", err)
	}
	return nil
}

// waitSTUN waits until the STUN server at addr answers a Binding request
// sent from node n.
func waitSTUN(ctx context.Context, n *Node, addr netip.AddrPort) error {
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	return pollUDP(ctx, n, addr, req.Raw, func(b []byte) bool { return stun.IsMessage(b) })
}

// waitUDP waits until something listens on the UDP port addr, as seen
// from node n: a NAT-PMP external-address request gets an answer.
// upnpHTTPPort is where the lab's miniupnpd serves UPnP's description
// and SOAP requests.
const upnpHTTPPort = 5000

// waitTCP connects to addr from inside n's namespace every 100 ms until
// a connection succeeds, for at most 10 s.
func waitTCP(ctx context.Context, n *Node, addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		c, err := n.DialContext(dctx, "tcp", addr.String())
		dcancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on %s/tcp: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitUDP(ctx context.Context, n *Node, addr netip.AddrPort) error {
	return pollUDP(ctx, n, addr, []byte{0, 0}, func(b []byte) bool { return len(b) >= 2 })
}

// pollUDP sends req to addr from inside n's namespace every 100 ms until
// an answer that ok accepts arrives, for at most 10 s.
func pollUDP(ctx context.Context, n *Node, addr netip.AddrPort, req []byte, ok func([]byte) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := openIn(n, func() (*net.UDPConn, error) { return net.ListenUDP("udp4", nil) })
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for {
		if _, err := c.WriteToUDPAddrPort(req, addr); err != nil && ctx.Err() != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if m, _, err := c.ReadFromUDPAddrPort(buf); err == nil && ok(buf[:m]) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("no answer from %v within 10s: %w", addr, err)
		}
	}
}

// MiniupnpdAvailable reports whether the lab can run port-mapping
// routers here, for tests that skip otherwise.
func MiniupnpdAvailable() error {
	if _, err := exec.LookPath(MiniupnpdPath); err != nil {
		return fmt.Errorf("miniupnpd is not installed (apt-get install miniupnpd-nftables): %w", err)
	}
	return nil
}

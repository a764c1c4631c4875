//go:build linux

package agent_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"weft/internal/key"
	"weft/internal/netlab"
	"weft/internal/scenario"
)

// plainWGHelper is the first argument that makes this test binary run as
// a plain wireguard-go process instead of running tests.
const plainWGHelper = "plainwg-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == plainWGHelper {
		if err := runPlainWG(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "plain wireguard-go:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// plainWGPeer is the other end of a plain wireguard-go tunnel.
type plainWGPeer struct {
	pub      key.NodePublic
	addr     netip.Addr     // its tunnel address
	endpoint netip.AddrPort // where to send; zero: learn it from its packets
}

// startPlainWG runs wireguard-go as it comes, in its own process on node:
// a kernel TUN "wgplain" with addr (at 1420, wg-quick's default and the
// MTU weft's path MTU discovery picks on the lab's 1500-byte paths), the library's own
// StdNetBind listening on port (0: any) and one peer. It is the same-run
// baseline that shows what weft's path-finding Bind and engine add to the
// library on the same path: one process per node, as weft runs one daemon
// per node. It returns once the device is up.
func startPlainWG(ctx context.Context, node *netlab.Node, bin string, priv key.NodePrivate, addr netip.Prefix, port uint16, peer plainWGPeer) (*netlab.Process, error) {
	privRaw, pubRaw := priv.Raw32(), peer.pub.Raw32()
	argv := []string{bin, plainWGHelper, hex.EncodeToString(privRaw[:]), addr.String(), strconv.Itoa(int(port)),
		hex.EncodeToString(pubRaw[:]), peer.addr.String()}
	if peer.endpoint.IsValid() {
		argv = append(argv, peer.endpoint.String())
	}
	p, err := node.Start(ctx, "plainwg", argv...)
	if err != nil {
		return nil, err
	}
	err = scenario.WaitFor(ctx, 10*time.Second, "plain wireguard-go on "+node.Name, func() (bool, error) {
		if p.Exited() {
			return false, errors.New(p.Logs())
		}
		return strings.Contains(p.Logs(), "ready"), nil
	})
	if err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// plainWGHosts adds the plain baseline's hosts to the seed topology:
// busan-wg and mac-wg beside busan and mac, behind the same routers, in
// hosts of their own so that weft never sees the baseline's tunnel as a
// local interface (and a possible path).
func plainWGHosts(tp *netlab.Topology) {
	for i := range tp.Routers {
		switch tp.Routers[i].Name {
		case "r-busan":
			tp.Routers[i].Hosts = append(tp.Routers[i].Hosts, "busan-wg")
		case "r-fukuoka":
			tp.Routers[i].Hosts = append(tp.Routers[i].Hosts, "mac-wg")
		}
	}
}

// plainPair is the plain wireguard-go baseline: busan-wg's tunnel address
// and the two processes' PIDs (mac-wg's, busan-wg's).
type plainPair struct {
	addr netip.Addr
	pids []int
}

// startPlainWGPair runs the plain wireguard-go baseline between hosts
// mac-wg and busan-wg (behind r-fukuoka and r-busan in the seed lab):
// busan-wg's port is forwarded on r-busan as the raw baseline's, and
// mac-wg sends to it there.
func startPlainWGPair(ctx context.Context, lab *netlab.Lab) (plainPair, error) {
	const plainPort = 51999
	if err := forwardPort(lab, "r-busan", unix.IPPROTO_UDP, plainPort, lab.Node("busan-wg").LANAddr); err != nil {
		return plainPair{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return plainPair{}, err
	}
	macKey, busanKey := key.NewNode(), key.NewNode()
	plainMac, plainBusan := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	pb, err := startPlainWG(ctx, lab.Node("busan-wg"), self, busanKey, netip.PrefixFrom(plainBusan, 24), plainPort,
		plainWGPeer{pub: macKey.Public(), addr: plainMac})
	if err != nil {
		return plainPair{}, err
	}
	pm, err := startPlainWG(ctx, lab.Node("mac-wg"), self, macKey, netip.PrefixFrom(plainMac, 24), 0,
		plainWGPeer{pub: busanKey.Public(), addr: plainBusan, endpoint: netip.AddrPortFrom(lab.Node("r-busan").WANAddr, plainPort)})
	if err != nil {
		return plainPair{}, err
	}
	return plainPair{addr: plainBusan, pids: []int{pm.PID, pb.PID}}, nil
}

// plainWGMTU is the plain baseline's tunnel MTU.
const plainWGMTU = 1420

// runPlainWG is the helper process: PRIVATE-HEX ADDR/BITS PORT PEER-HEX
// PEER-ADDR [PEER-ENDPOINT]. It prints "ready" once up and runs until
// SIGTERM or SIGINT.
func runPlainWG(args []string) error {
	if len(args) < 5 {
		return fmt.Errorf("want PRIVATE ADDR/BITS PORT PEER PEER-ADDR [ENDPOINT], got %q", args)
	}
	addr, err := netip.ParsePrefix(args[1])
	if err != nil {
		return err
	}
	dev, err := tun.CreateTUN("wgplain", plainWGMTU)
	if err != nil {
		return err
	}
	link, err := netlink.LinkByName("wgplain")
	if err != nil {
		dev.Close()
		return err
	}
	// The prefix's connected route comes with the address.
	ipn := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
		dev.Close()
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		dev.Close()
		return err
	}
	d := device.NewDevice(dev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	defer d.Close()
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=%s\npublic_key=%s\nallowed_ip=%s/32\n", args[0], args[2], args[3], args[4])
	if len(args) > 5 {
		cfg += "endpoint=" + args[5] + "\n"
	}
	if err := d.IpcSet(cfg); err != nil {
		return err
	}
	if err := d.Up(); err != nil {
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

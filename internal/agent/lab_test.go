//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weft/internal/agent"
	"weft/internal/localapi"
	"weft/internal/netcheck/netchecktest"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// ctrlAddr is the seed topology's ctrl host, where the control server and
// its embedded relay run.
const ctrlAddr = "203.0.113.10"

// labNet is a running tailnet in a seed lab.
type labNet struct {
	t   testing.TB
	ctx context.Context
	lab *netlab.Lab
	tn  *scenario.Tailnet
}

// startNet brings up the seed lab (changed by mods) with the control
// server and relay on ctrl and daemons on hosts. The server's default
// relay map has one region, "home", whose one relay answers STUN on two
// ports, so netcheck can tell an endpoint-dependent ("hard") NAT from an
// easy one.
func startNet(t *testing.T, timeout time.Duration, hosts []string, mods ...func(*netlab.Topology)) *labNet {
	t.Helper()
	return startNetTB(t, timeout, hosts, mods...)
}

func startNetTB(t testing.TB, timeout time.Duration, hosts []string, mods ...func(*netlab.Topology)) *labNet {
	t.Helper()
	return startNetServerArgs(t, timeout, hosts, nil, mods...)
}

// startNetServerArgs is startNet with extra `weft server` arguments;
// serverArgs may refer to the lab's directory, so it is called with it.
func startNetServerArgs(t testing.TB, timeout time.Duration, hosts []string, serverArgs func(labDir string) []string, mods ...func(*netlab.Topology)) *labNet {
	t.Helper()
	return startNetArgs(t, timeout, hosts, serverArgs, nil, mods...)
}

// startNetArgs is startNet with extra `weft server` arguments and extra
// arguments for every daemon (after --verbose).
func startNetArgs(t testing.TB, timeout time.Duration, hosts []string, serverArgs func(labDir string) []string, daemonArgs []string, mods ...func(*netlab.Topology)) *labNet {
	t.Helper()
	labtest.SkipUnlessRoot(t)
	lab := labtest.Seed(t, mods...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	bin := labtest.WeftBinary(t)
	var sargs []string
	if serverArgs != nil {
		sargs = serverArgs(lab.Dir())
	}
	tn, err := scenario.Start(ctx, lab, scenario.Options{
		Weft:       bin,
		Hosts:      hosts,
		ServerArgs: sargs,
		DaemonArgs: append([]string{"--verbose"}, daemonArgs...),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := &labNet{t: t, ctx: ctx, lab: lab, tn: tn}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(tn.LogTails(60))
		}
	})
	return ln
}

func (n *labNet) status(host string) (*localapi.Status, error) { return n.tn.Status(n.ctx, host) }

// peer returns host's view of peer, waiting until peer is in its map with
// addresses.
func (n *labNet) peer(host, peer string) *localapi.PeerStatus {
	n.t.Helper()
	var got *localapi.PeerStatus
	err := scenario.WaitFor(n.ctx, 30*time.Second, host+" sees "+peer, func() (bool, error) {
		st, err := n.status(host)
		if err != nil {
			return false, err
		}
		for _, p := range st.Peers {
			if p.Name == peer && len(p.Addresses) > 0 {
				got = p
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return got
}

// addr4 is a peer's IPv4 tailnet address.
func addr4(p *localapi.PeerStatus) netip.Addr {
	for _, a := range p.Addresses {
		if a.Addr().Is4() {
			return a.Addr()
		}
	}
	return netip.Addr{}
}

// waitPath waits until host's status shows peer's path of the given kind.
func (n *labNet) waitPath(host, peer, kind string, timeout time.Duration) *localapi.PeerStatus {
	n.t.Helper()
	var got *localapi.PeerStatus
	last := ""
	var lastSt *localapi.PeerStatus
	err := scenario.WaitFor(n.ctx, timeout, fmt.Sprintf("%s's path to %s to be %s", host, peer, kind), func() (bool, error) {
		st, err := n.status(host)
		if err != nil {
			return false, err
		}
		for _, p := range st.Peers {
			if p.Name == peer {
				last, lastSt = p.Path.Kind, p
				if p.Path.Kind == kind {
					got = p
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		b, _ := json.Marshal(lastSt)
		n.t.Fatalf("%v (last path: %q; peer: %s)", err, last, b)
	}
	return got
}

// echo opens a TCP connection from host to a listener on peer's tailnet
// address and checks that a message comes back.
func (n *labNet) echo(from, to string, toAddr netip.Addr) {
	n.t.Helper()
	ln, err := n.lab.Node(to).Listen("tcp4", netip.AddrPortFrom(toAddr, 0).String())
	if err != nil {
		n.t.Fatalf("listen on %s's tailnet address: %v", to, err)
	}
	defer ln.Close()
	tstest.ServeConns(ln, func(c net.Conn) {
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	})
	msg := []byte("hello over the tailnet from " + from)
	err = scenario.WaitFor(n.ctx, 30*time.Second, fmt.Sprintf("TCP echo %s → %s", from, to), func() (bool, error) {
		dctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
		defer cancel()
		c, err := n.lab.Node(from).DialContext(dctx, "tcp4", ln.Addr().String())
		if err != nil {
			return false, nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return false, nil
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return false, nil
		}
		return bytes.Equal(got, msg), nil
	})
	if err != nil {
		n.t.Fatal(err)
	}
}

// pair checks that a and b reach each other over TCP on their tailnet
// addresses, and returns a's view of b.
func (n *labNet) pair(a, b string) *localapi.PeerStatus {
	n.t.Helper()
	pb := n.peer(a, b)
	pa := n.peer(b, a)
	n.echo(a, b, addr4(pb))
	n.echo(b, a, addr4(pa))
	return pb
}

func setNAT(router string, k netlab.NATKind) func(*netlab.Topology) {
	return func(t *netlab.Topology) { t.SetNAT(router, k) }
}

// TestLabEasyEasy: busan and mac behind easy NATs reach each other over
// their tailnet addresses, the path becomes direct, and weft ping
// --until-direct ends with a direct pong.
func TestLabEasyEasy(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	p := n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if !strings.HasPrefix(p.Path.Endpoint, "203.0.113.21:") {
		t.Errorf("direct endpoint %q is not r-busan's WAN address", p.Path.Endpoint)
	}
	if p.RxBytes == 0 || p.TxBytes == 0 || p.LastHandshake.IsZero() {
		t.Errorf("mac's counters for busan after traffic: rx %d tx %d handshake %v", p.RxBytes, p.TxBytes, p.LastHandshake)
	}
	n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
	table, err := n.tn.CLI(n.ctx, "mac", "status")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(table), "\n") {
		found = found || (strings.Contains(line, "busan") && strings.Contains(line, "direct 203.0.113.21:"))
	}
	if !found {
		t.Errorf("weft status on mac has no direct row for busan:\n%s", table)
	}
	t.Logf("weft status on mac:\n%s", table)
	out, err := n.tn.CLI(n.ctx, "mac", "ping", "--until-direct", "-c", "20", "busan")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "pong from busan (") || !strings.Contains(last, " via 203.0.113.21:") {
		t.Errorf("weft ping --until-direct did not end with a direct pong:\n%s", out)
	}
	t.Logf("weft ping --until-direct busan:\n%s", out)
}

// TestLabHardHard: with endpoint-dependent NATs on both sides no probe can
// meet, so the path stays on the relay, and traffic still flows.
func TestLabHardHard(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"},
		setNAT("r-busan", netlab.NATHard), setNAT("r-fukuoka", netlab.NATHard))
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathRelay, 10*time.Second)
	// A discovery round (several seconds) must not find a direct path.
	time.Sleep(8 * time.Second)
	st, err := n.status("mac")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Name == "busan" && p.Path.Kind != localapi.PathRelay {
			t.Errorf("hard/hard path is %+v, want relay", p.Path)
		}
	}
	out, err := n.tn.CLI(n.ctx, "mac", "ping", "-c", "2", "busan")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "via relay home in") {
		t.Errorf("weft ping over the relay:\n%s", out)
	}
}

// TestLabUDPBlocked: busan's router drops all UDP, so busan reaches mac
// only through the relay (over TCP), and says so in its health.
func TestLabUDPBlocked(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"}, setNAT("r-busan", netlab.NATUDPBlocked))
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathRelay, 10*time.Second)
	err := scenario.WaitFor(n.ctx, 40*time.Second, "busan's health to say UDP is blocked", func() (bool, error) {
		st, err := n.status("busan")
		if err != nil {
			return false, err
		}
		for _, h := range st.Health {
			if strings.Contains(h, "UDP is blocked") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The problem also goes into busan's health history, after the
	// daemon's start, for someone who looks later.
	var history []localapi.HealthEvent
	err = scenario.WaitFor(n.ctx, 30*time.Second, "busan's health history to record UDP blocked", func() (bool, error) {
		out, err := n.tn.CLI(n.ctx, "busan", "health", "--json", "-n", "0")
		if err != nil {
			return false, err
		}
		var h struct {
			History []localapi.HealthEvent `json:"history"`
		}
		if err := json.Unmarshal(out, &h); err != nil {
			return false, fmt.Errorf("weft health --json: %w: %s", err, out)
		}
		history = h.History
		for _, e := range h.History {
			if e.Kind == localapi.EventProblem && strings.Contains(e.Text, "UDP is blocked") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%v; history: %+v", err, history)
	}
	if len(history) == 0 || history[0].Kind != localapi.EventState || !strings.HasPrefix(history[0].Text, "daemon started") {
		t.Errorf("history does not begin with the daemon's start: %+v", history)
	}
}

// TestLabIdlePeer: once nothing has been sent to a peer for a while, its
// direct path is no longer kept up and weft status calls it idle rather
// than "relay", which would read as if hole punching had failed; the next
// packet (here weft ping) brings it back, direct again.
func TestLabIdlePeer(t *testing.T) {
	n := startNet(t, 3*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	// magicsock's activity window is 45 s, and the trust in a direct
	// path without heartbeats lasts 6.5 s more.
	n.waitPath("mac", "busan", localapi.PathNone, 90*time.Second)
	table, err := n.tn.CLI(n.ctx, "mac", "status")
	if err != nil {
		t.Fatal(err)
	}
	idle := false
	for _, line := range strings.Split(string(table), "\n") {
		idle = idle || (strings.Contains(line, "busan") && strings.Contains(line, " idle "))
	}
	if !idle {
		t.Errorf("weft status on mac does not show busan idle:\n%s", table)
	}
	out, err := n.tn.CLI(n.ctx, "mac", "ping", "--until-direct", "-c", "20", "busan")
	if err != nil {
		t.Fatalf("weft ping to an idle peer: %v\n%s", err, out)
	}
	n.waitPath("mac", "busan", localapi.PathDirect, 10*time.Second)
}

// TestLabSpoofedSourceDropped: a packet that mac's kernel sends into the
// tunnel with a source address that is not mac's (here pc's tailnet
// address, as a compromised or misconfigured mac might) is sealed and
// sent, but busan accepts from mac only mac's own addresses and drops it;
// the same datagram from mac's real address arrives.
func TestLabSpoofedSourceDropped(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac", "pc"})
	busanAddr := addr4(n.pair("mac", "busan"))
	pcAddr := addr4(n.peer("mac", "pc"))
	macAddr := addr4(n.peer("busan", "mac"))

	ln, err := n.lab.Node("busan").ListenUDP(netip.AddrPortFrom(busanAddr, 4444))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			got <- fmt.Sprintf("%s from %s", buf[:k], from.Addr().Unmap())
		}
	}()
	// IP_TRANSPARENT lets the socket take, and send from, an address the
	// host does not have.
	var spoof net.PacketConn
	err = n.lab.Node("mac").Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, unix.IP_TRANSPARENT, 1)
			})
			return errors.Join(err, serr)
		}}
		var err error
		spoof, err = lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(pcAddr, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer spoof.Close()
	real, err := n.lab.Node("mac").ListenUDP(netip.AddrPortFrom(macAddr, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(busanAddr, 4444))
	rx0 := n.peer("busan", "mac").RxBytes
	for range 3 {
		if _, err := spoof.WriteTo([]byte("spoofed"), dst); err != nil {
			t.Fatalf("send with pc's address as source: %v", err)
		}
	}
	// They did cross the tunnel: busan's WireGuard received them from
	// mac (and then dropped them), so nothing was lost on the way.
	err = scenario.WaitFor(n.ctx, 10*time.Second, "busan's WireGuard to receive the spoofed packets", func() (bool, error) {
		return n.peer("busan", "mac").RxBytes > rx0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		t.Fatalf("busan accepted %q; mac may send only from %v", m, macAddr)
	default:
	}
	// The real datagram goes after the spoofed ones on the same tunnel,
	// so once it arrives the spoofed ones have had their chance.
	err = scenario.WaitFor(n.ctx, 10*time.Second, "the datagram from mac's own address", func() (bool, error) {
		if _, err := real.WriteTo([]byte("genuine"), dst); err != nil {
			return false, err
		}
		for {
			select {
			case m := <-got:
				if m != "genuine from "+macAddr.String() {
					return false, fmt.Errorf("busan accepted %q; mac may send only from %v", m, macAddr)
				}
				return true, nil
			case <-time.After(200 * time.Millisecond):
				return false, nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLabStandaloneRelay: the relay map's only region is a standalone
// `weft relay` on web, which learns the tailnet's node keys from the
// control server with the secret the server made in its data dir. busan,
// whose UDP is blocked, reaches mac through it.
func TestLabStandaloneRelay(t *testing.T) {
	const relayAddr = "203.0.113.80"
	rm := wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		7: {ID: 7, Code: "web", Name: "web relay", Nodes: []*wire.RelayNode{
			{Name: "7a", RegionID: 7, Host: relayAddr, Port: 8443, STUNPort: 3478, InsecureHTTP: true},
		}},
	}}
	n := startNetServerArgs(t, 2*time.Minute, []string{"busan", "mac"}, func(dir string) []string {
		b, err := json.Marshal(rm)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "relaymap.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"--relay-map", p}
	}, setNAT("r-busan", netlab.NATUDPBlocked))
	secret := filepath.Join(n.lab.Dir(), "server", "relay.secret")
	if _, err := os.Stat(secret); err != nil {
		t.Fatalf("the server made no relay secret: %v", err)
	}
	p, err := n.lab.Node("web").Start(n.ctx, "relay", labtest.WeftBinary(t), "relay", "--listen", ":8443",
		"--stun-listen", ":3478", "--server-url", n.tn.ServerURL, "--relay-secret-file", secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay on web:\n%s", scenario.Tail(p.Logs(), 40))
		}
	})
	n.pair("busan", "mac")
	got := n.waitPath("busan", "mac", localapi.PathRelay, 30*time.Second)
	if got.Path.RelayRegion != 7 {
		t.Errorf("busan reaches mac through relay region %d, want 7 (web)", got.Path.RelayRegion)
	}
	out, err := n.tn.CLI(n.ctx, "busan", "ping", "-c", "1", "mac")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "via relay web in") {
		t.Errorf("weft ping through the standalone relay:\n%s", out)
	}
}

// TestLabEasyHard: mac behind an easy NAT and busan behind a hard one meet
// directly through a port-guessing round.
func TestLabEasyHard(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"}, setNAT("r-busan", netlab.NATHard))
	n.pair("mac", "busan")
	// busan's network check found its NAT hard and published it; that is
	// what makes mac start a port-guessing round.
	err := scenario.WaitFor(n.ctx, 30*time.Second, "mac to learn that busan's NAT is hard", func() (bool, error) {
		p := n.peer("mac", "busan")
		return p.Hostinfo != nil && p.Hostinfo.NetInfo != nil && p.Hostinfo.NetInfo.MappingVariesByDestIP, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n.waitPath("mac", "busan", localapi.PathDirect, 45*time.Second)
	n.echo("mac", "busan", addr4(n.peer("mac", "busan")))
}

// TestLabEasyHardHardStarts: busan, behind the hard NAT, is the only side
// that uses the peer (mac sends it nothing: no TCP, no ping), and its
// weft ping --until-direct still ends with a direct pong. Only the easy
// side may start a port-guessing round; busan's call-me-maybe through the
// relay is what makes mac start one.
func TestLabEasyHardHardStarts(t *testing.T) {
	// Health sampling pings peers and connects through the tunnel, which
	// would make mac use the peer too (and start the round for its own
	// sake). With an hour between samples only the first one, 30 s after
	// the daemon starts, would: wait for it, then start both nodes afresh.
	n := startNetArgs(t, 3*time.Minute, []string{"busan", "mac"}, nil, []string{"--health-interval", "1h"}, setNAT("r-busan", netlab.NATHard))
	for _, h := range []string{"busan", "mac"} {
		err := scenario.WaitFor(n.ctx, 60*time.Second, h+"'s first health sample", func() (bool, error) {
			out, err := n.tn.CLI(n.ctx, h, "health", "stats", "--json")
			if err != nil {
				return false, nil
			}
			var st localapi.HealthStats
			if err := json.Unmarshal(out, &st); err != nil {
				return false, fmt.Errorf("health stats --json: %w: %s", err, out)
			}
			return len(st.Metrics) > 0, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"busan", "down"}, {"mac", "down"}, {"mac", "up"}, {"busan", "up"}} {
		if out, err := n.tn.CLI(n.ctx, args[0], args[1]); err != nil {
			t.Fatalf("weft %s on %s: %v\n%s", args[1], args[0], err, out)
		}
	}
	n.peer("busan", "mac")
	err := scenario.WaitFor(n.ctx, 30*time.Second, "mac to learn that busan's NAT is hard", func() (bool, error) {
		p := n.peer("mac", "busan")
		return p.Hostinfo != nil && p.Hostinfo.NetInfo != nil && p.Hostinfo.NetInfo.MappingVariesByDestIP, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 300 pings 100 ms apart: 30 s.
	out, err := n.tn.CLI(n.ctx, "busan", "ping", "--until-direct", "-c", "300", "--interval", "100ms", "--timeout", "2s", "mac")
	if err != nil {
		t.Fatalf("busan's pings to mac never came back direct: %v\n%s", err, scenario.Tail(string(out), 5))
	}
	n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
}

// TestLabFullMesh: three nodes, each reaches the other two.
func TestLabFullMesh(t *testing.T) {
	hosts := []string{"busan", "mac", "pc"}
	n := startNet(t, 2*time.Minute, hosts)
	for i, a := range hosts {
		for _, b := range hosts[i+1:] {
			n.pair(a, b)
		}
	}
	for _, a := range hosts {
		for _, b := range hosts {
			if a != b {
				n.waitPath(a, b, localapi.PathDirect, 30*time.Second)
			}
		}
	}
}

// transfer sends size random bytes from "from" to a listener on "to"'s
// tailnet address and checks their SHA-256 on arrival. During sends it
// calls during once, after a third of the data.
func (n *labNet) transfer(from, to string, size int, during func()) {
	n.t.Helper()
	n.transferRTO(from, to, size, during, 0)
}

// transferRTO is transfer with the retransmission timeout of both TCP
// sockets capped at rtoMax (TCP_RTO_MAX_MS; zero leaves the kernel's
// 120 s). Over a lossy link TCP doubles its timeout with each lost
// retransmission, so by chance alone it can sit silent for minutes;
// capped, a stall long enough to miss the deadline means the tunnel
// stopped carrying packets.
func (n *labNet) transferRTO(from, to string, size int, during func(), rtoMax time.Duration) {
	n.t.Helper()
	toAddr := addr4(n.peer(from, to))
	ln, err := n.lab.Node(to).Listen("tcp4", netip.AddrPortFrom(toAddr, 0).String())
	if err != nil {
		n.t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		if err := capRTO(c, rtoMax); err != nil {
			res <- result{err: err}
			return
		}
		c.SetDeadline(time.Now().Add(90 * time.Second))
		h := sha256.New()
		nb, err := io.Copy(h, c)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		res <- result{sum: s, n: nb, err: err}
	}()
	c, err := n.lab.Node(from).DialContext(n.ctx, "tcp4", ln.Addr().String())
	if err != nil {
		n.t.Fatal(err)
	}
	if err := capRTO(c, rtoMax); err != nil {
		n.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(90 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	start := time.Now()
	third := size / 3
	if _, err := c.Write(data[:third]); err != nil {
		n.t.Fatal(err)
	}
	if during != nil {
		during()
	}
	if _, err := c.Write(data[third:]); err != nil {
		n.t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	r := <-res
	c.Close()
	if r.err != nil {
		n.t.Fatalf("receiving: %v after %d bytes", r.err, r.n)
	}
	if r.n != int64(size) || r.sum != want {
		n.t.Fatalf("received %d bytes with sha256 %x, sent %d with %x", r.n, r.sum, size, want)
	}
	n.t.Logf("%d MB %s → %s intact in %v", size>>20, from, to, time.Since(start).Round(time.Millisecond))
}

// capRTO caps c's TCP retransmission timeout at max (none if max is 0).
func capRTO(c net.Conn, max time.Duration) error {
	if max == 0 {
		return nil
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_RTO_MAX_MS, int(max.Milliseconds()))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("TCP_RTO_MAX_MS (Linux 6.15 or later): %w", serr)
	}
	return nil
}

// TestLabTransfer50MB: 50 MB over the tunnel arrive intact.
func TestLabTransfer50MB(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.transfer("mac", "busan", 50<<20, nil)
}

// TestLabConntrackFlush: flushing both routers' NAT state in the middle of
// a transfer (a router reboot, a NAT timeout) heals by itself: the
// transfer completes intact and the path is direct again.
func TestLabConntrackFlush(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.transfer("mac", "busan", 20<<20, func() {
		for _, r := range []string{"r-busan", "r-fukuoka"} {
			if err := n.lab.FlushConntrack(r); err != nil {
				t.Fatal(err)
			}
		}
	})
	n.echo("busan", "mac", addr4(n.peer("busan", "mac")))
	// The direct path comes back too, not only the relay.
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
}

// TestLabRelayToDirect: a TCP connection opened right after up, while the
// path is still the relay, keeps working after the path turns direct.
func TestLabRelayToDirect(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	pb := n.peer("mac", "busan")
	toAddr := addr4(pb)
	ln, err := n.lab.Node("busan").Listen("tcp4", netip.AddrPortFrom(toAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	var c net.Conn
	err = scenario.WaitFor(n.ctx, 30*time.Second, "first TCP connection mac → busan", func() (bool, error) {
		dctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		defer cancel()
		c, err = n.lab.Node("mac").DialContext(dctx, "tcp4", ln.Addr().String())
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := n.status("mac")
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for _, p := range st.Peers {
		if p.Name == "busan" {
			first = p.Path.Kind
		}
	}
	t.Logf("path when the connection opened: %s", first)
	roundTrip := func(i int) error {
		msg := []byte(fmt.Sprintf("message %d", i))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	i := 0
	err = scenario.WaitFor(n.ctx, 30*time.Second, "the path to turn direct under a live connection", func() (bool, error) {
		i++
		if err := roundTrip(i); err != nil {
			return false, err
		}
		st, err := n.status("mac")
		if err != nil {
			return false, err
		}
		for _, p := range st.Peers {
			if p.Name == "busan" && p.Path.Kind == localapi.PathDirect {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 5; j++ {
		i++
		if err := roundTrip(i); err != nil {
			t.Fatalf("the connection broke after the path turned direct: %v", err)
		}
	}
	if first != localapi.PathRelay {
		t.Logf("note: the path was already %q when the connection opened; the relay→direct handover was not exercised this run", first)
	}
}

// TestLabNewLocalAddress: an address added to mac's LAN interface is
// noticed without a user doing anything and reaches busan as one of mac's
// endpoints.
func TestLabNewLocalAddress(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	added := netip.MustParsePrefix("192.168.2.50/24")
	err := n.lab.Node("mac").Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: added.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Well within DefaultNetcheckInterval: the kernel's change notice (or
	// the address poll), not the next periodic network check, must be
	// what notices.
	err = scenario.WaitFor(n.ctx, agent.DefaultNetcheckInterval-5*time.Second, "busan to see mac's new endpoint", func() (bool, error) {
		st, err := n.status("busan")
		if err != nil {
			return false, err
		}
		for _, p := range st.Peers {
			if p.Name != "mac" {
				continue
			}
			for _, ep := range p.Endpoints {
				if ep.Addr() == added.Addr() {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n.echo("busan", "mac", addr4(n.peer("busan", "mac")))
}

// TestLabServerDown: with the control server (and its embedded relay)
// killed, status says both are unreachable in plain words, and traffic
// keeps flowing over the direct path.
func TestLabServerDown(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if err := n.tn.KillServer(); err != nil {
		t.Fatal(err)
	}
	var health []string
	err := scenario.WaitFor(n.ctx, 60*time.Second, "mac's health to name the control server and the relay", func() (bool, error) {
		st, err := n.status("mac")
		if err != nil {
			return false, err
		}
		health = st.Health
		ctl, rel := false, false
		for _, h := range st.Health {
			ctl = ctl || strings.HasPrefix(h, "control server unreachable")
			rel = rel || strings.HasPrefix(h, "no relay reachable")
		}
		return ctl && rel, nil
	})
	if err != nil {
		t.Fatalf("%v; health: %q", err, health)
	}
	n.echo("mac", "busan", addr4(n.peer("mac", "busan")))
}

// TestLabDaemonKilled: busan's daemon dies with SIGKILL (no cleanup) and is
// started again; it comes back up by itself, recreates its TUN over what
// the crash left, and the two nodes reach each other directly again.
func TestLabDaemonKilled(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	if err := n.tn.KillDaemon("busan"); err != nil {
		t.Fatal(err)
	}
	if err := n.tn.StartDaemon(n.ctx, "busan"); err != nil {
		t.Fatal(err)
	}
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
	// The health history in the state dir outlived the crash: it shows
	// both starts.
	out, err := n.tn.CLI(n.ctx, "busan", "health", "-n", "0")
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(out), "daemon started"); c != 2 {
		t.Errorf("busan's history shows %d daemon starts, want 2:\n%s", c, out)
	}
}

// TestLabMultiHomedServer: the control server's host has an address in
// each of two public subnets and Fukuoka's router sits in the other one
// than the server's URL. With the server on its defaults (STUN on the
// wildcard address), the STUN answers must leave from the address they
// were sent to, or r-fukuoka drops them, mac's netcheck reports UDP as
// blocked and its peers stay on the relay.
func TestLabMultiHomedServer(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"}, netlab.MultiHomed)
	n.pair("mac", "busan")
	p := n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if !strings.HasPrefix(p.Path.Endpoint, "203.0.113.21:") {
		t.Errorf("mac's direct endpoint for busan %q is not r-busan's WAN address", p.Path.Endpoint)
	}
	p = n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
	if !strings.HasPrefix(p.Path.Endpoint, "198.51.100.22:") {
		t.Errorf("busan's direct endpoint for mac %q is not r-fukuoka's WAN address", p.Path.Endpoint)
	}
	st, err := n.status("mac")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Health {
		if strings.Contains(h, "UDP is blocked") {
			t.Errorf("mac's health says %q on a network where UDP is open", h)
		}
	}

	// weft netcheck on a node that is up, with no other flag, is
	// measured by the node's daemon over its own socket and relay map.
	out, err := n.tn.CLI(n.ctx, "mac", "netcheck", "--json")
	if err != nil {
		t.Fatal(err)
	}
	rep, _, err := netchecktest.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's socket is the one busan reaches mac on.
	if !rep.UDP || rep.GlobalV4 != p.Path.Endpoint || rep.MappingVariesByDestIP == nil || *rep.MappingVariesByDestIP ||
		rep.PreferredRegion != 1 || rep.RegionLatencyMS["1"] <= 0 {
		t.Errorf("mac's netcheck through its daemon: %s (busan reaches mac at %s)", out, p.Path.Endpoint)
	}
	human, err := n.tn.CLI(n.ctx, "mac", "netcheck")
	if err != nil || !strings.Contains(string(human), "UDP: true") || !strings.Contains(string(human), "IPv4: yes, "+p.Path.Endpoint) {
		t.Errorf("weft netcheck on mac: %v\n%s", err, human)
	}
}

// TestLabPathMTU: path MTU discovery on the direct path between mac and
// busan, with Fukuoka's access line at Ethernet's 1500 bytes, PPPoE's 1492
// or a tunnelled line's 1280. Each side probes the path with padded disco
// pings (Don't Fragment set) and sets its tunnel MTU to what the path
// carries: 1420 and 1412 (the line less the tunnel's 80 bytes), and 1280
// where no probe fits. Then 50 MB each way arrive intact (SHA-256) over
// the direct path, full-size TCP at that MTU.
func TestLabPathMTU(t *testing.T) {
	for _, tc := range []struct{ line, tunnel int }{{1500, 1420}, {1492, 1412}, {1280, 1280}} {
		t.Run(fmt.Sprint(tc.line), func(t *testing.T) {
			n := startNet(t, 3*time.Minute, []string{"busan", "mac"}, func(topo *netlab.Topology) {
				if tc.line != 1500 {
					topo.SetMTU("r-fukuoka", tc.line)
				}
			})
			// The narrow hop is really there.
			if got := linkMTU(t, n.lab.Node("mac"), "eth0"); got != tc.line {
				t.Fatalf("mac's eth0 MTU %d, want %d", got, tc.line)
			}
			n.pair("mac", "busan")
			n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
			n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
			for _, side := range [][2]string{{"mac", "busan"}, {"busan", "mac"}} {
				host, peer := side[0], side[1]
				var path localapi.Path
				var dev int
				err := scenario.WaitFor(n.ctx, 20*time.Second, host+"'s tunnel MTU", func() (bool, error) {
					p := n.peer(host, peer)
					path, dev = p.Path, linkMTU(t, n.lab.Node(host), "weft0")
					return path.Kind == localapi.PathDirect && path.MTU == tc.tunnel && dev == tc.tunnel, nil
				})
				if err != nil {
					t.Fatalf("%v: %s's path to %s %+v, weft0 MTU %d; want %d on both", err, host, peer, path, dev, tc.tunnel)
				}
			}
			n.transfer("mac", "busan", 50<<20, nil)
			n.transfer("busan", "mac", 50<<20, nil)
			for _, h := range []string{"mac", "busan"} {
				if got := linkMTU(t, n.lab.Node(h), "weft0"); got != tc.tunnel {
					t.Errorf("%s's weft0 MTU after the transfers %d, want %d", h, got, tc.tunnel)
				}
			}
			if p := n.waitPath("mac", "busan", localapi.PathDirect, 10*time.Second); p == nil {
				t.Fatal("no direct path after the transfers")
			}
		})
	}
}

// linkMTU is the MTU of node's interface name.
func linkMTU(t testing.TB, node *netlab.Node, name string) int {
	t.Helper()
	var mtu int
	err := node.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			mtu = l.Attrs().MTU
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s on %s: %v", name, node.Name, err)
	}
	return mtu
}

// TestLabPortMapping: busan and mac both sit behind hard NATs, where no
// punch can meet (TestLabHardHard stays on the relay), but Fukuoka's
// router runs miniupnpd. mac's daemon maps its UDP port with PCP (or
// NAT-PMP where PCP is dropped, or UPnP IGD where only that answers),
// publishes the mapped address first, and busan reaches it there: the
// path becomes direct. When mac goes down, the mapping is deleted.
func TestLabPortMapping(t *testing.T) {
	if err := netlab.MiniupnpdAvailable(); err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name   string
		router func(*netlab.Topology)
		via    string // the protocol mac's daemon logs for its mapping
	}{
		// miniupnpd answers PCP, which weft asks first.
		{"pcp", func(topo *netlab.Topology) { topo.SetPortMap("r-fukuoka", true) }, "via=pcp"},
		// The same daemon with PCP dropped: weft falls back to NAT-PMP.
		{"nat-pmp", func(topo *netlab.Topology) { topo.SetNoPCP("r-fukuoka") }, "via=nat-pmp"},
		// A router that speaks only UPnP IGD, as many consumer routers do.
		{"upnp-only", func(topo *netlab.Topology) { topo.SetUPnPOnly("r-fukuoka") }, "via=upnp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNet(t, 2*time.Minute, []string{"busan", "mac"},
				setNAT("r-busan", netlab.NATHard), setNAT("r-fukuoka", netlab.NATHard), tc.router)
			testPortMapping(t, n, tc.via)
		})
	}
}

func testPortMapping(t *testing.T, n *labNet, via string) {
	n.pair("mac", "busan")
	p := n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
	if !strings.HasPrefix(p.Path.Endpoint, "203.0.113.22:") {
		t.Errorf("busan's direct endpoint for mac %q is not on r-fukuoka's WAN address", p.Path.Endpoint)
	}
	if len(p.Endpoints) == 0 || p.Endpoints[0].String() != p.Path.Endpoint {
		t.Errorf("mac's first published endpoint %v is not the mapped one busan uses (%s)", p.Endpoints, p.Path.Endpoint)
	}
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if logs := n.tn.Daemon("mac").Logs(); !strings.Contains(logs, "port mapped") || !strings.Contains(logs, via) {
		t.Errorf("mac's daemon did not log its mapping %s:\n%s", via, scenario.Tail(logs, 40))
	}

	// The mapping lives on the router while mac is up and goes with it.
	mapped := func() string {
		out, err := n.lab.Node("r-fukuoka").Exec(n.ctx, "nft", "list", "chain", "inet", "miniupnpd", "prerouting_miniupnpd")
		if err != nil {
			t.Fatalf("listing miniupnpd's rules: %v: %s", err, out)
		}
		return string(out)
	}
	port := p.Path.Endpoint[strings.LastIndex(p.Path.Endpoint, ":")+1:]
	if rules := mapped(); !strings.Contains(rules, "dport "+port) || !strings.Contains(rules, "192.168.2.10") {
		t.Fatalf("no mapping of port %s to mac on r-fukuoka:\n%s", port, rules)
	}
	if _, err := n.tn.CLI(n.ctx, "mac", "down"); err != nil {
		t.Fatal(err)
	}
	if rules := mapped(); strings.Contains(rules, "dport "+port) {
		t.Errorf("mac's mapping outlived its data plane:\n%s", rules)
	}
}

// TestLabDoubleNAT: Fukuoka's home router sits behind a carrier's CGNAT
// (router isp, shared address space on its LAN), so mac is translated
// twice. mac and busan still find a direct path, and busan reaches mac at
// the CGNAT's public address, the only one the internet sees.
func TestLabDoubleNAT(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"}, netlab.DoubleNAT)
	if got := n.lab.Node("r-fukuoka").WANAddr; got != netip.MustParseAddr("100.64.22.10") {
		t.Fatalf("r-fukuoka's WAN address %v, want 100.64.22.10 on the CGNAT's LAN", got)
	}
	n.pair("mac", "busan")
	p := n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
	if !strings.HasPrefix(p.Path.Endpoint, "203.0.113.40:") {
		t.Errorf("busan's direct endpoint for mac %q is not on the CGNAT's public address", p.Path.Endpoint)
	}
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.echo("busan", "mac", addr4(n.peer("busan", "mac")))
}

// TestLabShortNATTimeout: both home routers forget an idle UDP mapping
// after 5 s, as many home and carrier routers do within 30 s. busan and
// mac find their direct path, then exchange nothing for 30 s (six
// timeouts); afterwards a connection between them goes through at once
// and the path is direct again, whether weft's keepalives held the
// mappings open or the path was found anew.
func TestLabShortNATTimeout(t *testing.T) {
	short := func(topo *netlab.Topology) {
		topo.SetUDPTimeout("r-busan", 5*time.Second)
		topo.SetUDPTimeout("r-fukuoka", 5*time.Second)
	}
	n := startNet(t, 3*time.Minute, []string{"busan", "mac"}, short)
	out, err := n.lab.Node("r-fukuoka").Exec(n.ctx, "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout_stream")
	if err != nil || strings.TrimSpace(string(out)) != "5" {
		t.Fatalf("r-fukuoka's UDP stream timeout: %q, %v; want 5", out, err)
	}
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	select {
	case <-n.ctx.Done():
		t.Fatal(n.ctx.Err())
	case <-time.After(30 * time.Second):
	}
	n.echo("mac", "busan", addr4(n.peer("mac", "busan")))
	n.echo("busan", "mac", addr4(n.peer("busan", "mac")))
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
}

// TestLabRoaming: mac is carried from Fukuoka to Busan's LAN in the
// middle of a 50 MB transfer to busan. Its address and gateway change
// under the daemon; the transfer completes intact (falling back to the
// relay while no path is known), and the path ends direct over Busan's
// LAN.
func TestLabRoaming(t *testing.T) {
	n := startNet(t, 3*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.transfer("mac", "busan", 50<<20, func() {
		if err := n.lab.MoveHost("mac", "r-busan"); err != nil {
			t.Fatal(err)
		}
	})
	if got := n.lab.Node("mac").LANAddr; got != netip.MustParseAddr("192.168.1.11") {
		t.Fatalf("mac's address on Busan's LAN is %v", got)
	}
	if err := n.lab.MoveHost("mac", "r-busan"); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("moving mac to the LAN it is on: %v", err)
	}
	p := n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if !strings.HasPrefix(p.Path.Endpoint, "192.168.1.10:") {
		t.Errorf("mac's direct path to busan %q is not over Busan's LAN", p.Path.Endpoint)
	}
	n.echo("busan", "mac", addr4(n.peer("busan", "mac")))
}

// TestLabRenumber: mac's LAN address changes under a transfer, as when a
// DHCP server hands out another lease: 192.168.2.10 goes, 192.168.2.60
// comes with the default route. Every mapping on r-fukuoka for the old address is dead; the
// transfer completes intact and the path is direct again.
func TestLabRenumber(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"})
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.transfer("mac", "busan", 20<<20, func() {
		if err := renumber(n.lab.Node("mac"), "192.168.2.10/24", "192.168.2.60/24", "192.168.2.1"); err != nil {
			t.Fatal(err)
		}
	})
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.echo("busan", "mac", addr4(n.peer("busan", "mac")))
}

// renumber replaces address from with to on node's eth0 and puts the
// default route through gw back, as a DHCP client does with a new lease
// (deleting the old address takes the route with it).
func renumber(node *netlab.Node, from, to, gw string) error {
	return node.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		add, _ := netlink.ParseAddr(to)
		del, _ := netlink.ParseAddr(from)
		if err := netlink.AddrDel(link, del); err != nil {
			return err
		}
		if err := netlink.AddrAdd(link, add); err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(gw)})
	})
}

//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"weft/internal/localapi"
	"weft/internal/policy/policytest"
	"weft/internal/scenario"
)

// aclPolicy is the lab policy: the Fukuoka machines (mac, pc)
// may reach busan:22 and use busan as exit node, and nothing else; busan's
// exit node is approved by the policy, not an administrator.
var aclPolicy = policytest.SeedPolicy

// tailnetAddr is host's tailnet IPv4 address.
func (l *exitLab) tailnetAddr(host string) netip.Addr {
	l.t.Helper()
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli(host, "status", "--json")), &st); err != nil || st.Self == nil {
		l.t.Fatalf("%s's status: %v", host, err)
	}
	return netip.MustParseAddr(firstAddr(st.Self))
}

// peerNames are the peers host's weft status --json lists.
func (l *exitLab) peerNames(host string) []string {
	l.t.Helper()
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli(host, "status", "--json")), &st); err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, p := range st.Peers {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// tcpTo connects from host to dst's addr:port, where dst listens, and
// checks a byte comes back: both directions of the flow passed.
func (l *exitLab) tcpTo(host, dst string, addr netip.Addr, port int) error {
	ln, err := l.lab.Node(dst).Listen("tcp4", net.JoinHostPort(addr.String(), fmt.Sprint(port)))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("k"))
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Second)
	defer cancel()
	c, err := l.lab.Node(host).DialContext(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return fmt.Errorf("connected, but no byte came back: %w", err)
	}
	return nil
}

// udpTo sends a datagram from host to dst's addr:port, where dst echoes
// it, and waits for the echo.
func (l *exitLab) udpTo(host, dst string, addr netip.Addr, port int) error {
	srv, err := l.lab.Node(dst).ListenUDP(netip.AddrPortFrom(addr, uint16(port)))
	if err != nil {
		return err
	}
	defer srv.Close()
	go func() {
		b := make([]byte, 64)
		srv.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := srv.ReadFromUDPAddrPort(b)
		if err == nil {
			srv.WriteToUDPAddrPort(b[:n], from)
		}
	}()
	c, err := l.lab.Node(host).ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort([]byte("weft"), netip.AddrPortFrom(addr, uint16(port))); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 64)
	if _, _, err := c.ReadFromUDPAddrPort(b); err != nil {
		return fmt.Errorf("no echo: %w", err)
	}
	return nil
}

func (l *exitLab) ping(host string, dst netip.Addr) error {
	_, err := l.lab.Node(host).Ping(l.ctx, dst, 1, 0, 2*time.Second)
	return err
}

func (l *exitLab) setPolicy(body string) (string, error) {
	p := filepath.Join(l.lab.Dir(), fmt.Sprintf("policy-%d.hujson", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		l.t.Fatal(err)
	}
	out, err := l.tn.Admin(l.ctx, "policy", "set", p)
	return string(out), err
}

// TestLabACL runs the policy on real nodes: who may open what
// over TCP, UDP and ICMP, replies to allowed flows, who sees whom, the
// exit node approved by the policy and used through it, a LAN host kept
// out, an invalid policy refused with the old one still in force, and a
// change taking effect on running nodes.
func TestLabACL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	if out, err := l.setPolicy(aclPolicy); err != nil {
		t.Fatalf("setting the policy: %v\n%s", err, out)
	}
	busan, mac := l.tailnetAddr("busan"), l.tailnetAddr("mac")

	t.Run("autoApprovers approve busan's exit node", func(t *testing.T) {
		out, err := l.tn.Admin(ctx, "routes")
		if err != nil || !strings.Contains(string(out), "autoApprovers.exitNode: alice@") {
			t.Fatalf("weft admin routes (%v):\n%s", err, out)
		}
	})
	t.Run("mac connects to busan:22 and gets replies", func(t *testing.T) {
		var lastErr error
		err := scenario.WaitFor(ctx, 60*time.Second, "mac reaches busan:22", func() (bool, error) {
			lastErr = l.tcpTo("mac", "busan", busan, 22)
			return lastErr == nil, nil
		})
		if err != nil {
			t.Fatalf("%v (last: %v)", err, lastErr)
		}
		if err := l.tcpTo("pc", "busan", busan, 22); err != nil {
			t.Errorf("pc to busan:22: %v", err)
		}
	})
	deny := []struct {
		name string
		try  func() error
	}{
		{"mac to busan:80", func() error { return l.tcpTo("mac", "busan", busan, 80) }},
		{"busan to mac:22", func() error { return l.tcpTo("busan", "mac", mac, 22) }},
		{"pc to mac:22", func() error { return l.tcpTo("pc", "mac", mac, 22) }},
		{"udp mac to busan:80", func() error { return l.udpTo("mac", "busan", busan, 80) }},
		{"udp busan to mac:22", func() error { return l.udpTo("busan", "mac", mac, 22) }},
		{"ping busan to mac", func() error { return l.ping("busan", mac) }},
		{"ping pc to mac", func() error { return l.ping("pc", mac) }},
	}
	for _, d := range deny {
		t.Run("refused: "+d.name, func(t *testing.T) {
			if err := d.try(); err == nil {
				t.Fatal("it got through")
			}
		})
	}
	t.Run("udp and icmp follow the same rules", func(t *testing.T) {
		if err := l.udpTo("mac", "busan", busan, 22); err != nil {
			t.Errorf("udp mac to busan:22: %v", err)
		}
		if err := l.ping("mac", busan); err != nil {
			t.Errorf("ping mac to busan: %v", err)
		}
	})
	t.Run("pc and mac do not see each other", func(t *testing.T) {
		for host, want := range map[string][]string{"mac": {"busan"}, "pc": {"busan"}, "busan": {"mac", "pc"}} {
			if got := l.peerNames(host); !slices.Equal(got, want) {
				t.Errorf("%s's weft status lists %v, want %v", host, got, want)
			}
		}
	})
	t.Run("drops are counted", func(t *testing.T) {
		var st localapi.Status
		if err := json.Unmarshal([]byte(l.cli("busan", "status", "--json")), &st); err != nil || st.Drops == nil || st.Drops.Filter["no_rule"] == 0 {
			t.Fatalf("busan's drops: %+v (%v)", st.Drops, err)
		}
		if out := l.cli("mac", "health"); !strings.Contains(out, "Packet filter: dropped") {
			t.Errorf("mac's weft health does not show filter drops:\n%s", out)
		}
	})
	t.Run("mac uses busan as exit node", func(t *testing.T) {
		l.cli("mac", "set", "--exit-node", "busan")
		l.awaitWhoami("mac", l.lab.Node("r-busan").WANAddr, "web sees mac as r-busan through the exit node")
		l.cli("mac", "set", "--exit-node=")
	})
	t.Run("busan's LAN host cannot reach mac through busan", func(t *testing.T) {
		busanLAN := l.lab.Node("busan").LANAddr
		err := l.lab.Node("nas").Do(func() error {
			return netlink.RouteAdd(&netlink.Route{Dst: netipNet(netip.MustParsePrefix("100.64.0.0/10")), Gw: busanLAN.AsSlice()})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.tcpTo("nas", "mac", mac, 22); err == nil {
			t.Fatal("nas reached mac through busan")
		}
	})
	t.Run("an invalid policy is refused and the old one holds", func(t *testing.T) {
		bad := strings.Replace(aclPolicy, `"busan:22",`, `"busan:22" "busan:80",`, 1)
		line := strings.Count(aclPolicy[:strings.Index(aclPolicy, `"busan:22",`)], "\n") + 1
		out, err := l.setPolicy(bad)
		if err == nil || !strings.Contains(out+err.Error(), fmt.Sprintf("line %d, column", line)) {
			t.Fatalf("weft admin policy set accepted an invalid policy or did not place the mistake: %v\n%s", err, out)
		}
		got, err := l.tn.Admin(ctx, "policy", "get")
		if err != nil || string(got) != aclPolicy {
			t.Fatalf("policy in force after the refusal (%v):\n%s", err, got)
		}
		if err := l.tcpTo("mac", "busan", busan, 80); err == nil {
			t.Error("mac reached busan:80 after a refused policy")
		}
		if err := l.tcpTo("mac", "busan", busan, 22); err != nil {
			t.Errorf("mac to busan:22 after a refused policy: %v", err)
		}
	})
	t.Run("a change takes effect without a restart", func(t *testing.T) {
		changed := strings.Replace(aclPolicy, `"busan:22",`, `"busan:22,80",`, 1)
		changed = strings.Replace(changed, `"deny": ["busan:80", "pc:22"]`, `"deny": ["pc:22"]`, 1)
		if out, err := l.setPolicy(changed); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var lastErr error
		err := scenario.WaitFor(ctx, 20*time.Second, "mac reaches busan:80 under the new policy", func() (bool, error) {
			lastErr = l.tcpTo("mac", "busan", busan, 80)
			return lastErr == nil, nil
		})
		if err != nil {
			t.Fatalf("%v (last: %v)", err, lastErr)
		}
		if err := l.tcpTo("busan", "mac", mac, 22); err == nil {
			t.Error("busan reached mac:22 under the new policy")
		}
	})
}

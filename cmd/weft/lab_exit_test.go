//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"weft/internal/demo"
	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/nodestate"
	"weft/internal/osnet"
	"weft/internal/scenario"
)

// exitLab is the seed tailnet with busan offering itself as exit node and
// its LAN as a subnet route, plus nas: a plain host on busan's LAN that
// runs no weft.
type exitLab struct {
	t   testing.TB
	ctx context.Context
	lab *netlab.Lab
	tn  *scenario.Tailnet
}

func startExitLab(t testing.TB, ctx context.Context, mods ...func(*netlab.Topology)) *exitLab {
	labtest.SkipUnlessRoot(t)
	lab := labtest.Seed(t, append(mods, func(tp *netlab.Topology) {
		tp.Routers[0].Hosts = append(tp.Routers[0].Hosts, "nas")
	})...)
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{
		Hosts: []string{"busan", "mac", "pc"},
		UpArgs: func(host string) []string {
			if host == "busan" {
				return []string{"--advertise-exit-node", "--advertise-routes", lab.Node("r-busan").LAN.String()}
			}
			return nil
		},
	})
	return &exitLab{t: t, ctx: ctx, lab: lab, tn: tn}
}

func (l *exitLab) cli(host string, args ...string) string {
	l.t.Helper()
	out, err := l.tn.CLI(l.ctx, host, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(out)
}

func (l *exitLab) admin(args ...string) {
	l.t.Helper()
	if _, err := l.tn.Admin(l.ctx, args...); err != nil {
		l.t.Fatal(err)
	}
}

// whoami is the address web sees host's HTTP request come from.
func (l *exitLab) whoami(host string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(l.ctx, 3*time.Second)
	defer cancel()
	return scenario.Whoami(ctx, l.lab, host)
}

// useBusanExit approves busan as an exit node, waits until mac lists it,
// selects it on mac, and waits until web sees mac as r-busan.
func (l *exitLab) useBusanExit(t testing.TB) {
	t.Helper()
	l.admin("routes", "approve", "busan", "exit")
	err := scenario.WaitFor(l.ctx, 30*time.Second, "busan listed as exit node on mac", func() (bool, error) {
		out, err := l.tn.CLI(l.ctx, "mac", "exit-node", "list")
		return err == nil && strings.Contains(string(out), "busan"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l.cli("mac", "set", "--exit-node", "busan")
	l.awaitWhoami("mac", l.lab.Node("r-busan").WANAddr, "web sees mac as r-busan through the exit node")
}

// awaitWhoami waits until web sees host as want.
func (l *exitLab) awaitWhoami(host string, want netip.Addr, what string) {
	l.t.Helper()
	var last netip.Addr
	var lastErr error
	err := scenario.WaitFor(l.ctx, 30*time.Second, what, func() (bool, error) {
		last, lastErr = l.whoami(host)
		return lastErr == nil && last == want, nil
	})
	if err != nil {
		l.t.Fatalf("%v: web last saw %s as %v (err %v), want %v", err, host, last, lastErr, want)
	}
}

// reach opens a TCP connection from host to dst's address on its LAN and
// returns the source address dst saw, or an error if it cannot connect
// within a couple of seconds.
func (l *exitLab) reach(host, dst string) (netip.Addr, error) {
	return l.reachAddr(host, dst, l.lab.Node(dst).LANAddr)
}

// reachAddr is reach to one of dst's addresses.
func (l *exitLab) reachAddr(host, dst string, addr netip.Addr) (netip.Addr, error) {
	d := l.lab.Node(dst)
	ln, err := d.Listen("tcp4", net.JoinHostPort(addr.String(), "0"))
	if err != nil {
		return netip.Addr{}, err
	}
	defer ln.Close()
	seen := make(chan netip.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(seen)
			return
		}
		seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Second)
	defer cancel()
	c, err := l.lab.Node(host).DialContext(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	c.Close()
	select {
	case a := <-seen:
		return a, nil
	case <-time.After(2 * time.Second):
		return netip.Addr{}, errors.New("connected, but the listener saw nothing")
	}
}

// awaitReach waits until host reaches dst over TCP, and returns the source
// address dst saw.
func (l *exitLab) awaitReach(host, dst, what string) netip.Addr {
	l.t.Helper()
	var src netip.Addr
	var lastErr error
	err := scenario.WaitFor(l.ctx, 30*time.Second, what, func() (bool, error) {
		src, lastErr = l.reach(host, dst)
		return lastErr == nil, nil
	})
	if err != nil {
		l.t.Fatalf("%v (last error: %v)", err, lastErr)
	}
	return src
}

// leftovers lists weft's host-wide state in host's namespace.
func (l *exitLab) leftovers(host string) []string {
	l.t.Helper()
	var found []string
	err := l.lab.Node(host).Do(func() error {
		var err error
		found, err = osnet.Leftovers(osnet.Options{})
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return found
}

// TestLabExitNodeAndSubnetRoute runs the seed story with busan as exit
// node and subnet router: the address web sees from mac, the LAN with and
// without allow-LAN, a plain host on busan's LAN through an approved
// route only, and weft's nftables state removed by down and by the next
// start after a SIGKILL.
func TestLabExitNodeAndSubnetRoute(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	fukuoka, busanWAN := l.lab.Node("r-fukuoka").WANAddr, l.lab.Node("r-busan").WANAddr
	busanLAN, macLAN := l.lab.Node("busan").LANAddr, l.lab.Node("mac").LANAddr

	l.awaitWhoami("mac", fukuoka, "web sees mac as r-fukuoka without an exit node")
	if out := l.cli("busan", "status"); !strings.Contains(out, "weft admin routes approve busan exit") {
		t.Errorf("busan's status does not say its offer waits for approval:\n%s", out)
	}

	t.Run("mac reaches busan through the tunnel", func(t *testing.T) {
		var st localapi.Status
		if err := json.Unmarshal([]byte(l.cli("busan", "status", "--json")), &st); err != nil || st.Self == nil {
			t.Fatalf("busan's status: %v", err)
		}
		busanTailnet := netip.MustParseAddr(firstAddr(st.Self))
		t0 := time.Now()
		var lastErr error
		err := scenario.WaitFor(ctx, 60*time.Second, "mac reaches busan's tailnet address", func() (bool, error) {
			_, lastErr = l.reachAddr("mac", "busan", busanTailnet)
			return lastErr == nil, nil
		})
		if err != nil {
			t.Fatalf("%v (last: %v)", err, lastErr)
		}
		t.Logf("tunnel up after %v", time.Since(t0).Round(time.Millisecond))
	})
	t.Run("unapproved subnet route is not used", func(t *testing.T) {
		l.cli("mac", "set", "--accept-routes")
		if src, err := l.reach("mac", "nas"); err == nil {
			t.Fatalf("mac reached nas (seen as %v) before the route was approved", src)
		}
	})
	t.Run("approved subnet route reaches a plain LAN host through busan", func(t *testing.T) {
		l.admin("routes", "approve", "busan", l.lab.Node("r-busan").LAN.String())
		src := l.awaitReach("mac", "nas", "mac reaches nas through the approved route")
		if src != busanLAN {
			t.Errorf("nas saw mac's connection from %v, want busan's LAN address %v (masqueraded)", src, busanLAN)
		}
	})
	t.Run("--snat-subnet-routes=false keeps the tailnet source address", func(t *testing.T) {
		// nas must then route the tailnet back to busan itself.
		err := l.lab.Node("nas").Do(func() error {
			return netlink.RouteAdd(&netlink.Route{Dst: netipNet(netip.MustParsePrefix("100.64.0.0/10")), Gw: busanLAN.AsSlice()})
		})
		if err != nil {
			t.Fatal(err)
		}
		l.cli("busan", "set", "--snat-subnet-routes=false")
		var st localapi.Status
		if err := json.Unmarshal([]byte(l.cli("mac", "status", "--json")), &st); err != nil || st.Self == nil {
			t.Fatalf("mac's status: %v", err)
		}
		macTailnet := netip.MustParseAddr(firstAddr(st.Self))
		var src netip.Addr
		err = scenario.WaitFor(ctx, 20*time.Second, "nas sees mac's tailnet address", func() (bool, error) {
			a, err := l.reach("mac", "nas")
			src = a
			return err == nil && a == macTailnet, nil
		})
		if err != nil {
			t.Fatalf("%v: nas last saw %v, want %v", err, src, macTailnet)
		}
		l.cli("busan", "set", "--snat-subnet-routes=true")
	})
	t.Run("exit node: web sees r-busan", func(t *testing.T) {
		l.useBusanExit(t)
		out := l.cli("mac", "exit-node", "check", "--url", "http://"+l.lab.Node("web").WANAddr.String()+"/")
		if !strings.Contains(out, fukuoka.String()) || !strings.Contains(out, busanWAN.String()) {
			t.Errorf("exit-node check should show %v direct and %v through busan:\n%s", fukuoka, busanWAN, out)
		}
		if out := l.cli("mac", "exit-node", "list"); !strings.Contains(out, "*") {
			t.Errorf("exit-node list does not mark busan:\n%s", out)
		}
	})
	t.Run("the exit node survives a daemon crash and restart", func(t *testing.T) {
		if err := l.tn.RestartDaemonAfterKill(ctx, "mac"); err != nil {
			t.Fatal(err)
		}
		l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan after mac's daemon restarted")
	})
	t.Run("without allow-LAN the LAN goes to the exit node", func(t *testing.T) {
		// pc's LAN address does not exist on busan's side, so the
		// connection leaves busan for the internet and fails, as
		// docs/os-networking.md says.
		if src, err := l.reach("mac", "pc"); err == nil {
			t.Fatalf("mac reached pc's LAN address (pc saw %v) with the exit node and no LAN access", src)
		}
	})
	t.Run("with allow-LAN mac reaches pc over the LAN", func(t *testing.T) {
		l.cli("mac", "set", "--exit-node-allow-lan-access")
		src := l.awaitReach("mac", "pc", "mac reaches pc's LAN address with allow-LAN")
		if src != macLAN {
			t.Errorf("pc saw %v, want mac's LAN address %v (direct over the LAN)", src, macLAN)
		}
		if a, err := l.whoami("mac"); err != nil || a != busanWAN {
			var dump []string
			for _, argv := range [][]string{{"ip", "rule"}, {"ip", "route", "show", "table", "all"}, {"ip", "-6", "rule"}} {
				out, _ := l.lab.Node("mac").Exec(ctx, argv...)
				dump = append(dump, string(out))
			}
			out, _ := l.lab.Node("busan").Exec(ctx, "nft", "list", "ruleset")
			dump = append(dump, string(out))
			dump = append(dump, l.cli("mac", "status"))
			t.Errorf("with allow-LAN web sees mac as %v (%v), want still r-busan %v\n%s", a, err, busanWAN, strings.Join(dump, "\n"))
		}
	})
	t.Run("clearing the exit node restores the direct address", func(t *testing.T) {
		l.cli("mac", "set", "--exit-node=")
		l.awaitWhoami("mac", fukuoka, "web sees mac as r-fukuoka again")
	})
	t.Run("weft down leaves no nftables table or rule", func(t *testing.T) {
		if len(l.leftovers("busan")) == 0 {
			t.Fatal("busan forwards for the tailnet but has no weft table: nothing to check")
		}
		l.cli("busan", "down")
		if found := l.leftovers("busan"); len(found) != 0 {
			t.Errorf("after weft down busan still has: %q", found)
		}
	})
	t.Run("a SIGKILLed daemon's table is cleaned at the next start", func(t *testing.T) {
		if err := l.tn.Up(ctx, "busan"); err != nil {
			t.Fatal(err)
		}
		err := scenario.WaitFor(ctx, 20*time.Second, "busan's nftables table back", func() (bool, error) {
			return len(l.leftovers("busan")) > 0, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.tn.KillDaemon("busan"); err != nil {
			t.Fatal(err)
		}
		if len(l.leftovers("busan")) == 0 {
			t.Fatal("SIGKILL left nothing behind: nothing to check")
		}
		// The next run must not bring the node up again (which would
		// make a new table), so the check sees only the cleanup.
		st, err := nodestate.Open(l.tn.StateDir("busan"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := st.LoadPrefs()
		if err != nil {
			t.Fatal(err)
		}
		p.WantUp = false
		if err := st.SavePrefs(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(l.tn.Socket("busan")); err != nil {
			t.Fatal(err)
		}
		if err := l.tn.StartDaemon(ctx, "busan"); err != nil {
			t.Fatal(err)
		}
		// The daemon takes its socket first (one daemon per socket) and
		// cleans up right after, so the socket may accept before the
		// cleanup is done: wait for it, but not forever.
		var found []string
		err = scenario.WaitFor(ctx, 20*time.Second, "busan's leftovers cleaned by the restarted daemon", func() (bool, error) {
			found = l.leftovers("busan")
			return len(found) == 0, nil
		})
		if err != nil {
			t.Errorf("after a restart busan still has: %q (%v)", found, err)
		}
	})
}

// TestLabDemo runs `weft demo` as a user would, in its own lab.
func TestLabDemo(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Unique per run: a lab's directory (with the server's data)
	// outlives its namespaces, so it is removed here.
	name := fmt.Sprintf("t%d", time.Now().UnixNano()/1e3%1e6)
	t.Cleanup(func() { os.RemoveAll(filepath.Join("/run/weft-lab", name)) })
	var out strings.Builder
	err := demo.Run(ctx, demo.Options{
		Weft:       labtest.WeftBinary(t),
		Out:        &out,
		LabName:    name,
		Throughput: 2 * time.Second,
		Logger:     slog.New(slog.DiscardHandler),
	})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "All steps passed") {
		t.Errorf("the demo did not say it passed")
	}
}

func netipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

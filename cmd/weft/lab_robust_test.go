//go:build linux

package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/netlab/labtest"
	"weft/internal/nodestate"
	"weft/internal/scenario"
)

// TestLabEverydayRobustness walks through what broke when weft was tried
// as a new user would, on the seed tailnet with busan as mac's exit node,
// one step per mishap. Each step checks what the user sees: the address
// the lab's web host sees, pings, `weft status`.
func TestLabEverydayRobustness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	busanWAN := l.lab.Node("r-busan").WANAddr
	web := l.lab.Node("web").WANAddr

	l.useBusanExit(t)

	// Each step's helpers fail that step, not the whole walk.
	step := func(name string, fn func(t *testing.T, l *exitLab)) {
		t.Run(name, func(t *testing.T) {
			sl := *l
			sl.t = t
			fn(t, &sl)
		})
	}

	step("renaming the exit node keeps mac's egress", func(t *testing.T, l *exitLab) {
		l.admin("nodes", "rename", "busan", "jeju")
		l.awaitPeerName("mac", "jeju")
		l.awaitWhoami("mac", busanWAN, "web still sees mac as r-busan after busan became jeju")
		if out := l.cli("mac", "exit-node", "list"); !strings.Contains(out, "* ") || !strings.Contains(out, "jeju") {
			t.Errorf("exit-node list does not mark jeju as in use:\n%s", out)
		}
		l.admin("nodes", "rename", "jeju", "busan")
		l.awaitPeerName("mac", "busan")
		l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan after the name came back")
	})

	step("exit-node check asks the tailnet's control server by default", func(t *testing.T, l *exitLab) {
		fukuoka := l.lab.Node("r-fukuoka").WANAddr
		out := l.cli("mac", "exit-node", "check")
		if !strings.Contains(out, "/whoami") || !strings.Contains(out, fukuoka.String()) || !strings.Contains(out, busanWAN.String()) {
			t.Errorf("exit-node check without --url should name the URL it asked and show %v direct, %v through busan:\n%s", fukuoka, busanWAN, out)
		}
	})

	step("up with nothing changed loses no packet through the exit node", func(t *testing.T, l *exitLab) {
		var wg sync.WaitGroup
		var rtts []time.Duration
		var pingErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			rtts, pingErr = l.lab.Node("mac").Ping(ctx, web, 40, 100*time.Millisecond, 2*time.Second)
		}()
		for _, host := range []string{"busan", "busan", "mac", "mac"} {
			l.cli(host, "up")
		}
		wg.Wait()
		if pingErr != nil {
			t.Errorf("mac's pings to web through busan while both ran `weft up` again: %v (after %d replies)", pingErr, len(rtts))
		}
	})

	step("--hostname on a registered node says how to rename it", func(t *testing.T, l *exitLab) {
		out, err := l.tn.CLI(ctx, "busan", "up", "--hostname", "busan2")
		if err == nil || !strings.Contains(string(out), "weft admin nodes rename busan busan2") {
			t.Errorf("up --hostname busan2 on busan: %v\n%s", err, out)
		}
		l.awaitPeerName("mac", "busan")
	})

	step("a second daemon on mac's state dir refuses and the first keeps routing", func(t *testing.T, l *exitLab) {
		argv := []string{labtest.WeftBinary(t), "daemon", "--state-dir", l.tn.StateDir("mac"), "--socket", l.tn.Socket("mac")}
		p, err := l.lab.Node("mac").Start(ctx, "daemon2", argv...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Kill() })
		err = scenario.WaitFor(ctx, 15*time.Second, "the second daemon to exit", func() (bool, error) { return p.Exited(), nil })
		if err != nil {
			p.Kill()
			t.Errorf("%v; its log:\n%s", err, p.Logs())
		}
		if !strings.Contains(p.Logs(), "already running") {
			t.Errorf("the second daemon did not say another one runs:\n%s", p.Logs())
		}
		// Another state dir and socket, the same namespace: weft's rules
		// and table there are the live daemon's.
		other := t.TempDir()
		argv = []string{labtest.WeftBinary(t), "daemon", "--state-dir", other, "--socket", filepath.Join(other, "weft.sock")}
		p3, err := l.lab.Node("mac").Start(ctx, "daemon3", argv...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p3.Kill() })
		err = scenario.WaitFor(ctx, 15*time.Second, "the third daemon to exit", func() (bool, error) { return p3.Exited(), nil })
		if err != nil || !strings.Contains(p3.Logs(), "another weft daemon runs in this network namespace") {
			t.Errorf("a daemon with its own state dir beside a live one: %v; its log:\n%s", err, p3.Logs())
		}
		if _, err := l.tn.CLI(ctx, "mac", "status"); err != nil {
			t.Errorf("the first daemon no longer answers on its socket: %v", err)
		}
		// Egress checked several times: a cleanup by the second daemon
		// shows at once, and nothing brings it back.
		for range 3 {
			if a, err := l.whoami("mac"); err != nil || a != busanWAN {
				t.Fatalf("web sees mac as %v (%v), want r-busan %v: the exit node was bypassed", a, err, busanWAN)
			}
			time.Sleep(300 * time.Millisecond)
		}
	})

	step("an offline exit node is a health line", func(t *testing.T, l *exitLab) {
		l.cli("busan", "down")
		for _, args := range [][]string{{"status"}, {"health"}} {
			var out string
			err := scenario.WaitFor(ctx, 30*time.Second, "mac's "+args[0]+" to name busan offline", func() (bool, error) {
				b, _ := l.tn.CLI(ctx, "mac", args...)
				out = string(b)
				return strings.Contains(out, "exit node busan is offline"), nil
			})
			if err != nil {
				t.Errorf("%v:\n%s", err, out)
			}
		}
		l.cli("busan", "up")
		l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan once busan is back")
	})

	step("after --rotate-key pings are direct again without a restart", func(t *testing.T, l *exitLab) {
		l.awaitDirect("mac", "busan", 30*time.Second)
		l.cli("busan", "up", "--rotate-key")
		l.awaitDirect("busan", "mac", 5*time.Second)
		l.awaitDirect("mac", "busan", 5*time.Second)
		l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan through busan's new key")
	})

	step("with control and its relay down a restarted daemon reaches its peers directly", func(t *testing.T, l *exitLab) {
		l.awaitDirect("mac", "busan", 30*time.Second)
		l.awaitDirect("pc", "mac", 30*time.Second)
		l.awaitSavedMap("mac", "busan")
		if err := l.tn.KillServer(); err != nil {
			t.Fatal(err)
		}
		if err := l.tn.RestartDaemonAfterKill(ctx, "mac"); err != nil {
			t.Fatal(err)
		}
		l.awaitDirect("mac", "busan", 10*time.Second)
		l.awaitDirect("busan", "mac", 10*time.Second)
		l.awaitDirect("pc", "mac", 10*time.Second)
		l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan with the control server down")
	})
}

// awaitPeerName waits until host's status lists a peer called name.
func (l *exitLab) awaitPeerName(host, name string) {
	l.t.Helper()
	err := scenario.WaitFor(l.ctx, 30*time.Second, host+" sees a peer "+name, func() (bool, error) {
		out, err := l.tn.CLI(l.ctx, host, "status", "--json")
		if err != nil {
			return false, nil
		}
		var st localapi.Status
		if err := json.Unmarshal(out, &st); err != nil {
			return false, err
		}
		for _, p := range st.Peers {
			if p.Name == name {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
}

// awaitDirect waits up to within for a `weft ping` from host to peer to
// come back over a direct path.
func (l *exitLab) awaitDirect(host, peer string, within time.Duration) {
	l.t.Helper()
	var out []byte
	err := scenario.WaitFor(l.ctx, within, host+" pings "+peer+" directly", func() (bool, error) {
		pctx, cancel := context.WithTimeout(l.ctx, within)
		defer cancel()
		var err error
		out, err = l.tn.CLI(pctx, host, "ping", "-c", "1", "--timeout", "1s", "--until-direct", peer)
		return err == nil, nil
	})
	if err != nil {
		st, _ := l.tn.CLI(l.ctx, host, "status")
		l.t.Fatalf("%v; last ping:\n%s\n%s's status:\n%s", err, out, host, st)
	}
}

// awaitSavedMap waits until the map host saved in its state dir has peer
// with the node key peer has now: a daemon saves its map a couple of
// seconds after it changes, and a restart starts from the saved one.
func (l *exitLab) awaitSavedMap(host, peer string) {
	l.t.Helper()
	err := scenario.WaitFor(l.ctx, 30*time.Second, host+"'s saved map to have "+peer+"'s key", func() (bool, error) {
		out, err := l.tn.CLI(l.ctx, peer, "status", "--json")
		if err != nil {
			return false, nil
		}
		var st localapi.Status
		if err := json.Unmarshal(out, &st); err != nil || st.Self == nil {
			return false, err
		}
		sd, err := nodestate.Open(l.tn.StateDir(host))
		if err != nil {
			return false, err
		}
		var nm controlclient.NetMap
		if err := sd.LoadNetMap(&nm); err != nil {
			return false, err
		}
		for _, n := range nm.Peers {
			if n.Name == peer && n.NodeKey == st.Self.NodeKey {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
}

//go:build linux

package main

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
)

// exitInUse is `weft status --json`'s exit_node on host.
func (l *exitLab) exitInUse(host string) string {
	l.t.Helper()
	var st struct {
		ExitNode *string `json:"exit_node"`
	}
	out := l.cli(host, "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ExitNode == nil {
		l.t.Fatalf("status --json has no exit_node (%v):\n%s", err, out)
	}
	return *st.ExitNode
}

// awaitExit waits up to bound for host's exit node in use to be want and
// returns how long it took.
func (l *exitLab) awaitExit(host, want string, bound time.Duration) time.Duration {
	l.t.Helper()
	t0 := time.Now()
	got := ""
	err := scenario.WaitFor(l.ctx, bound, host+" using exit node "+want, func() (bool, error) {
		got = l.exitInUse(host)
		return got == want, nil
	})
	if err != nil {
		l.t.Fatalf("%v: exit_node is %q", err, got)
	}
	return time.Since(t0)
}

// healthEvents is host's health history, as `weft health --json` prints it.
func (l *exitLab) healthEvents(host string) []localapi.HealthEvent {
	l.t.Helper()
	var h struct {
		History []localapi.HealthEvent `json:"history"`
	}
	if err := json.Unmarshal([]byte(l.cli(host, "health", "--json", "-n", "0")), &h); err != nil {
		l.t.Fatal(err)
	}
	return h.History
}

func hasEvent(evs []localapi.HealthEvent, kind, text string) bool {
	for _, e := range evs {
		if e.Kind == kind && strings.Contains(e.Text, text) {
			return true
		}
	}
	return false
}

// startTwoExitLab is the seed lab with a second host, second, on busan's
// LAN behind r-busan; busan, second and mac join, busan and second as exit
// nodes that the administrator approves. argv, if not nil, rewrites a
// host's daemon command line (scenario.Options.DaemonArgv).
func startTwoExitLab(t testing.TB, ctx context.Context, second string, argv func(host string, argv []string) []string) *exitLab {
	labtest.SkipUnlessRoot(t)
	lab := labtest.Seed(t, func(tp *netlab.Topology) {
		tp.Routers[0].Hosts = append(tp.Routers[0].Hosts, second)
	})
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{
		Hosts:      []string{"busan", second, "mac"},
		DaemonArgv: argv,
		UpArgs:     scenario.ExitNodes("busan", second),
	})
	l := &exitLab{t: t, ctx: ctx, lab: lab, tn: tn}
	l.admin("routes", "approve", "busan", "exit")
	l.admin("routes", "approve", second, "exit")
	return l
}

// TestLabExitFailover gives mac two Busan-side exit nodes in order, busan
// then busan2: killing busan's daemon moves mac's egress to busan2 within
// the 15 s the issue allows, restarting it moves it back, each switch is a
// health event, and auto picks one of them.
func TestLabExitFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := startTwoExitLab(t, ctx, "busan2", nil)
	lab, tn := l.lab, l.tn
	busanWAN := lab.Node("r-busan").WANAddr
	err := scenario.WaitFor(ctx, 30*time.Second, "mac to accept busan,busan2 as exit nodes", func() (bool, error) {
		_, err := tn.CLI(ctx, "mac", "set", "--exit-node=busan,busan2")
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l.awaitExit("mac", "busan", 10*time.Second)
	l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan through busan")
	if out := l.cli("mac", "status"); !strings.Contains(out, "Exit node: busan (failover list busan, busan2)") {
		t.Errorf("status does not say which exit node is in use:\n%s", out)
	}

	if err := tn.KillDaemon("busan"); err != nil {
		t.Fatal(err)
	}
	took := l.awaitExit("mac", "busan2", 15*time.Second)
	t.Logf("busan killed: mac moved to busan2 after %v", took.Round(100*time.Millisecond))
	l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan through busan2")
	web := "http://" + lab.Node("web").WANAddr.String() + "/"
	if out := l.cli("mac", "exit-node", "check", web); !strings.Contains(out, "through exit node busan2:     "+busanWAN.String()) ||
		!strings.Contains(out, "Traffic leaves through busan2.") {
		t.Errorf("exit-node check after the failover:\n%s", out)
	}
	if evs := l.healthEvents("mac"); !hasEvent(evs, localapi.EventExit, "exit node busan → busan2") {
		t.Errorf("no health event for the failover: %+v", evs)
	}

	if err := tn.StartDaemon(ctx, "busan"); err != nil {
		t.Fatal(err)
	}
	took = l.awaitExit("mac", "busan", time.Minute)
	t.Logf("busan restarted: mac moved back after %v", took.Round(100*time.Millisecond))
	l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan through busan again")
	if evs := l.healthEvents("mac"); !hasEvent(evs, localapi.EventExit, "exit node busan2 → busan: busan is back") {
		t.Errorf("no health event for the return: %+v", evs)
	}

	// Frozen, not dead: busan's daemon stops (SIGSTOP) while its control
	// connection stays open, so the map still says online; the missed
	// pings move mac all the same.
	pid := tn.Daemon("busan").PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	took = l.awaitExit("mac", "busan2", 15*time.Second)
	t.Logf("busan frozen: mac moved to busan2 after %v", took.Round(100*time.Millisecond))
	if evs := l.healthEvents("mac"); !hasEvent(evs, localapi.EventExit, "busan stopped answering pings") {
		t.Errorf("no health event naming the missed pings: %+v", evs)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	l.awaitExit("mac", "busan", time.Minute)

	l.cli("mac", "set", "--exit-node=auto")
	if use := l.exitInUse("mac"); use != "busan" && use != "busan2" {
		t.Errorf("auto uses %q", use)
	}
	l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan with auto")
}

//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
	"weft/internal/wire"
)

// healthStats runs `weft health stats --json` on host and returns its
// rows by name.
func healthStats(t *testing.T, ctx context.Context, tn *scenario.Tailnet, host string, args ...string) map[string]wire.MetricSummary {
	t.Helper()
	out, err := tn.CLI(ctx, host, append([]string{"health", "stats", "--json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Metrics []wire.MetricSummary `json:"metrics"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("health stats --json: %v\n%s", err, out)
	}
	rows := map[string]wire.MetricSummary{}
	for _, m := range st.Metrics {
		rows[m.Name] = m
	}
	return rows
}

// TestLabHealthSamples runs the seed's tailnet with a one-second sample
// interval: samples accumulate, `weft health stats` summarises the peer's
// round trip, the relay's and the control server's, and the samples
// survive a daemon killed as a power cut would.
func TestLabHealthSamples(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labtest.Seed(t, func(tp *netlab.Topology) { tp.SetDelay("r-busan", 20) })
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{
		Hosts:      []string{"busan", "mac"},
		DaemonArgs: []string{"--health-interval", "1s", "--metrics-listen", "127.0.0.1:9543"},
	})
	ctrl := fmt.Sprintf("probe_rtt_ms:%s:8080", lab.Node("ctrl").Addr())
	var rows map[string]wire.MetricSummary
	err := scenario.WaitFor(ctx, time.Minute, "five samples of busan's round trip on mac", func() (bool, error) {
		rows = healthStats(t, ctx, tn, "mac")
		return rows["peer_rtt_ms:busan"].Samples >= 5 && rows[ctrl].Samples >= 5, nil
	})
	if err != nil {
		t.Fatalf("%v; last table: %+v", err, rows)
	}
	for _, name := range []string{"peer_rtt_ms:busan", ctrl} {
		m := rows[name]
		if m.Unit != "ms" || !(0 < m.Min && m.Min <= m.P50 && m.P50 <= m.P95 && m.P95 <= m.Max && m.Min <= m.Mean && m.Mean <= m.Max) {
			t.Errorf("%s: %+v is not a table of round trips", name, m)
		}
	}
	// r-busan delays what crosses it by 20 ms.
	if m := rows["peer_rtt_ms:busan"]; m.Min < 20 {
		t.Errorf("busan's round trip %+v is shorter than the lab's delay", m)
	}
	// The handshake with busan's speed test port crosses the tunnel.
	if m := rows["peer_tunnel_rtt_ms:busan"]; m.Samples == 0 || m.Min < 20 {
		t.Errorf("round trip through the tunnel: %+v", m)
	}
	if rows["peer_direct:busan"].Samples == 0 || rows["udp"].Max != 1 {
		t.Errorf("no path or UDP rows: %+v", rows)
	}
	if only := healthStats(t, ctx, tn, "mac", "--peer", "busan"); len(only) == 0 || only[ctrl].Samples != 0 {
		t.Errorf("--peer busan gave %+v", only)
	}

	// The control server has the samples mac reported, in batches.
	var admin map[string]wire.MetricSummary
	err = scenario.WaitFor(ctx, time.Minute, "the control server to show mac's samples of busan's round trip", func() (bool, error) {
		out, err := tn.Admin(ctx, "--json", "nodes", "health", "mac")
		if err != nil {
			return false, err
		}
		var rep struct {
			Metrics []wire.MetricSummary `json:"metrics"`
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			return false, err
		}
		admin = map[string]wire.MetricSummary{}
		for _, m := range rep.Metrics {
			admin[m.Name] = m
		}
		return admin["peer_rtt_ms:busan"].Samples >= 5, nil
	})
	if err != nil {
		t.Fatalf("%v; last: %+v", err, admin)
	}
	if m := admin["peer_rtt_ms:busan"]; m.Min < 20 || m.Unit != "ms" {
		t.Errorf("the server's row %+v", m)
	}
	if out, err := tn.Admin(ctx, "nodes", "health", "mac", "--peer", "busan"); err != nil || !strings.Contains(string(out), "peer_rtt_ms:busan") {
		t.Errorf("weft admin nodes health mac --peer busan: %v\n%s", err, out)
	}

	// Prometheus: mac's daemon on the address given, the server on its
	// default.
	for _, m := range []struct{ host, url, want string }{
		{"mac", "http://127.0.0.1:9543/metrics", `weft_health_peer_rtt_ms{target="busan"}`},
		{"mac", "http://127.0.0.1:9543/metrics", `weft_peer_online{peer="busan"} 1`},
		{"ctrl", "http://127.0.0.1:9542/metrics", "weft_server_nodes_online 2"},
	} {
		if body := scrapeIn(t, lab.Node(m.host), m.url); !strings.Contains(body, m.want) {
			t.Errorf("%s on %s lacks %q", m.url, m.host, m.want)
		}
	}

	// A power cut: the samples taken so far are still there after the
	// daemon comes back.
	before := rows["peer_rtt_ms:busan"].Samples
	if err := tn.KillDaemon("mac"); err != nil {
		t.Fatal(err)
	}
	// mac is down: the server still has its table.
	if out, err := tn.Admin(ctx, "nodes", "health", "mac"); err != nil || !strings.Contains(string(out), "peer_rtt_ms:busan") {
		t.Errorf("weft admin nodes health mac with mac down: %v\n%s", err, out)
	}
	if err := tn.StartDaemon(ctx, "mac"); err != nil {
		t.Fatal(err)
	}
	if after := healthStats(t, ctx, tn, "mac")["peer_rtt_ms:busan"].Samples; after < before {
		t.Errorf("after a SIGKILL and restart, %d samples of busan's round trip, before %d", after, before)
	}
}

// TestLabSpeedtest measures mac ↔ busan through the tunnel, both ways,
// with nothing but busan's daemon on the other side, and checks that a
// test against an offline node fails and says so.
func TestLabSpeedtest(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labtest.Seed(t)
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{Hosts: []string{"busan", "mac", "pc"}})
	// busan's daemon serves the test once its tailnet address is on
	// its TUN, a moment after `weft up` returns.
	var out []byte
	err := scenario.WaitFor(ctx, 10*time.Second, "a speed test mac → busan", func() (bool, error) {
		var err error
		out, err = tn.CLI(ctx, "mac", "speedtest", "busan", "--time", "2s", "--json")
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rep struct {
		UpMbps   *float64 `json:"up_mbps"`
		DownMbps *float64 `json:"down_mbps"`
		UpBytes  int64    `json:"up_bytes"`
		Path     string   `json:"path"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("speedtest --json: %v\n%s", err, out)
	}
	t.Logf("mac → busan: %s", out)
	if rep.UpMbps == nil || rep.DownMbps == nil || *rep.UpMbps <= 0 || *rep.DownMbps <= 0 || rep.UpBytes <= 0 ||
		(rep.Path != "direct" && rep.Path != "relay") {
		t.Errorf("speedtest mac → busan:\n%s", out)
	}
	// The other way round, as text.
	if out, err := tn.CLI(ctx, "busan", "speedtest", "mac", "--time", "1s", "--reverse"); err != nil || !strings.Contains(string(out), "down") || strings.Contains(string(out), "up ") {
		t.Errorf("speedtest busan ← mac --reverse: %v\n%s", err, out)
	}

	if err := tn.KillDaemon("pc"); err != nil {
		t.Fatal(err)
	}
	err = scenario.WaitFor(ctx, 30*time.Second, "mac to see pc offline", func() (bool, error) {
		out, err := tn.CLI(ctx, "mac", "speedtest", "pc", "--time", "1s")
		return err != nil && strings.Contains(string(out), "pc is offline"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLabRebootRecovery is the seed's reboot test: busan, mac's exit
// node, loses its daemon as in a power cut (SIGKILL, its forwarding rules
// left behind), is started again as the systemd unit does, and `weft
// health` on busan says how long it took to reconnect and to reach mac
// directly; mac's egress comes back through it. Then the control server
// is restarted under the nodes. The figures are logged for
// docs/benchmarks.md.
func TestLabRebootRecovery(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labtest.Seed(t)
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{Hosts: []string{"busan", "mac"},
		UpArgs: scenario.ExitNodes("busan")})
	l := &exitLab{t: t, ctx: ctx, lab: lab, tn: tn}
	l.admin("routes", "approve", "busan", "exit")
	err := scenario.WaitFor(ctx, 30*time.Second, "mac to take busan as exit node", func() (bool, error) {
		_, err := tn.CLI(ctx, "mac", "set", "--exit-node=busan")
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	busanWAN := lab.Node("r-busan").WANAddr
	l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan")
	l.cli("busan", "ping", "mac", "--until-direct", "-c", "30")

	if err := tn.KillDaemon("busan"); err != nil {
		t.Fatal(err)
	}
	if left := l.leftovers("busan"); len(left) == 0 {
		t.Fatal("the killed daemon left nothing behind; the test would not show a recovery from a power cut")
	}
	t0 := time.Now()
	if err := tn.StartDaemon(ctx, "busan"); err != nil {
		t.Fatal(err)
	}
	var rec *localapi.Recovery
	err = scenario.WaitFor(ctx, time.Minute, "busan's health history to record its recovery", func() (bool, error) {
		for _, e := range l.healthEvents("busan") {
			if e.Kind == localapi.EventRecovery {
				rec = e.Recovery
			}
		}
		return rec != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Unclean || rec.RegisteredMS <= 0 || rec.DirectMS < rec.RegisteredMS || rec.DirectPeer != "mac" || rec.Started.Before(t0) {
		t.Errorf("recovery %+v", rec)
	}
	t.Logf("daemon SIGKILLed and started again: registered after %.0f ms, direct to mac after %.0f ms (started %v after the test's start)",
		rec.RegisteredMS, rec.DirectMS, rec.Started.Sub(t0).Round(time.Millisecond))
	if out := l.cli("busan", "health"); !strings.Contains(out, "Last restart:") || !strings.Contains(out, "first direct pong (from mac)") {
		t.Errorf("weft health does not show the last restart:\n%s", out)
	}
	l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan again")

	// The control server restarted under the nodes.
	if err := tn.KillServer(); err != nil {
		t.Fatal(err)
	}
	if err := tn.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	err = scenario.WaitFor(ctx, time.Minute, "the restarted server to see mac online", func() (bool, error) {
		var n struct {
			Online *bool `json:"online"`
		}
		out, err := tn.Admin(ctx, "nodes", "show", "mac", "--json")
		return err == nil && json.Unmarshal(out, &n) == nil && n.Online != nil && *n.Online, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control server SIGKILLed and started again: mac connected %v after it answered", time.Since(t1).Round(10*time.Millisecond))
	l.cli("mac", "ping", "busan", "--until-direct", "-c", "10")
}

// scrapeIn GETs url from inside n's namespace.
func scrapeIn(t *testing.T, n *netlab.Node, url string) string {
	t.Helper()
	resp, err := n.HTTPClient().Get(url)
	if err != nil {
		t.Errorf("GET %s on %s: %v", url, n.Name, err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/wire"
)

// fakeHistory is a daemon with one health problem and a recorded history.
type fakeHistory struct {
	fakePinger
	events []localapi.HealthEvent
}

func (f *fakeHistory) Status(context.Context) (*localapi.Status, error) {
	return &localapi.Status{BackendState: localapi.StateRunning, Health: []string{"UDP is blocked on this network"}}, nil
}

func (f *fakeHistory) HealthHistory(context.Context) ([]localapi.HealthEvent, error) {
	return f.events, nil
}

func TestHealthCommand(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	events := []localapi.HealthEvent{
		{Time: t0, Kind: localapi.EventState, Text: "daemon started; state Running"},
		{Time: t0.Add(time.Minute), Kind: localapi.EventPath, Peer: "mac", Text: "mac: relay home → direct 203.0.113.22:41641"},
		{Time: t0.Add(time.Hour), Kind: localapi.EventProblem, Text: "UDP is blocked on this network"},
	}
	sock := serveFake(t, &fakeHistory{events: events})

	out, errs, code := weft(t, "--socket", sock, "health", "-n", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"Health: UDP is blocked on this network",
		"mac: relay home → direct 203.0.113.22:41641",
		"problem  UDP is blocked on this network",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "daemon started") {
		t.Errorf("-n 2 printed the third-last event:\n%s", out)
	}

	out, errs, code = weft(t, "--socket", sock, "health", "--json", "-n", "0")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errs)
	}
	var got struct {
		Health  []string               `json:"health"`
		History []localapi.HealthEvent `json:"history"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(got.Health) != 1 || len(got.History) != 3 || got.History[1].Peer != "mac" || !got.History[2].Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("--json = %+v", got)
	}
	if _, _, code := weft(t, "--socket", sock, "health", "-n", "-1"); code != 2 {
		t.Errorf("health -n -1 exited %d, want 2", code)
	}
}

// fakeStats is a daemon whose samples summarise as the seed's table.
type fakeStats struct {
	fakeHistory
	got localapi.HealthStatsRequest
}

func (f *fakeStats) HealthStats(_ context.Context, req localapi.HealthStatsRequest) (*localapi.HealthStats, error) {
	f.got = req
	return &localapi.HealthStats{Metrics: []wire.MetricSummary{
		{Name: "battery_pct", Unit: "%", Mean: 84.8, Min: 84, P50: 85, P95: 85, Max: 85, Samples: 368},
		{Name: "peer_rtt_ms:busan", Unit: "ms", Mean: 29.31, Min: 28, P50: 29, P95: 30, Max: 90, Samples: 368},
	}}, nil
}

func TestHealthStatsCommand(t *testing.T) {
	f := &fakeStats{}
	sock := serveFake(t, f)
	out, errs, code := weft(t, "--socket", sock, "health", "stats", "--since", "30h", "--peer", "busan")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if f.got.Since != 30*time.Hour || f.got.Peer != "busan" {
		t.Errorf("the daemon was asked for %+v", f.got)
	}
	for _, want := range []string{
		"Metric             mean    min  p50  p95  max  samples",
		"battery_pct        84.8%   84   85   85   85   368",
		"peer_rtt_ms:busan  29.3ms  28   29   30   90   368",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, errs, code = weft(t, "--socket", sock, "health", "stats", "--json", "--since", "7d")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errs)
	}
	if f.got.Since != 7*24*time.Hour {
		t.Errorf("--since 7d asked for %v", f.got.Since)
	}
	var got struct {
		Metrics []map[string]any `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(got.Metrics) != 2 {
		t.Fatalf("--json = %s", out)
	}
	for _, k := range []string{"name", "unit", "mean", "min", "p50", "p95", "max", "samples"} {
		if _, ok := got.Metrics[1][k]; !ok {
			t.Errorf("--json row lacks %q: %s", k, out)
		}
	}
	if got.Metrics[1]["name"] != "peer_rtt_ms:busan" || got.Metrics[1]["samples"] != 368.0 {
		t.Errorf("--json row %v", got.Metrics[1])
	}
	for _, bad := range []string{"yesterday", "-3h", "0d"} {
		if _, _, code := weft(t, "--socket", sock, "health", "stats", "--since", bad); code != 2 {
			t.Errorf("--since %s exited %d, want 2", bad, code)
		}
	}
}

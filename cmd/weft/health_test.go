package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
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

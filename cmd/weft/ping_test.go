package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"weft/internal/localapi"
	"weft/internal/localapi/localapitest"
)

// fakePinger is a daemon whose pings answer from a script: the i-th ping
// gets replies[i] (the last one repeats); a zero Path.Kind is no pong.
type fakePinger struct {
	mu      sync.Mutex
	replies []localapi.PingResult
	calls   int
}

func (f *fakePinger) Up(context.Context, localapi.UpRequest) (*localapi.Status, error) {
	return nil, errors.New("not here")
}
func (f *fakePinger) Down(context.Context) error   { return nil }
func (f *fakePinger) Logout(context.Context) error { return nil }
func (f *fakePinger) Status(context.Context) (*localapi.Status, error) {
	return &localapi.Status{}, nil
}

func (f *fakePinger) Ping(_ context.Context, req localapi.PingRequest) (*localapi.PingResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.replies[min(f.calls, len(f.replies)-1)]
	f.calls++
	if req.Peer == "nosuch" {
		return nil, localapi.Permanent(errors.New(`no peer "nosuch" in the tailnet: see weft status`))
	}
	if r.Path.Kind == "" {
		return nil, errors.New("magicsock: ping: no pong")
	}
	return &r, nil
}

// serveFake serves b's local API on a socket of its own until the test
// ends, and returns the socket's path.
func serveFake(t *testing.T, b localapi.Backend) string {
	t.Helper()
	sock, _ := localapitest.Serve(t, b)
	return sock
}

func TestPing(t *testing.T) {
	relayPong := localapi.PingResult{Name: "mac", Address: "100.64.0.2", RTTMS: 12, Path: localapi.Path{Kind: localapi.PathRelay, RelayRegion: 1, RelayCode: "home"}}
	directPong := localapi.PingResult{Name: "mac", Address: "100.64.0.2", RTTMS: 1.04, Path: localapi.Path{Kind: localapi.PathDirect, Endpoint: "203.0.113.22:41641"}}
	none := localapi.PingResult{}
	tests := []struct {
		name     string
		args     []string
		replies  []localapi.PingResult
		wantCode int
		want     []string // lines of stdout
	}{
		{"relay then direct, until direct", []string{"--until-direct", "-c", "5"}, []localapi.PingResult{relayPong, directPong}, 0, []string{
			"pong from mac (100.64.0.2) via relay home in 12ms",
			"pong from mac (100.64.0.2) via 203.0.113.22:41641 in 1.0ms",
		}},
		{"count", []string{"-c", "2"}, []localapi.PingResult{directPong}, 0, []string{
			"pong from mac (100.64.0.2) via 203.0.113.22:41641 in 1.0ms",
			"pong from mac (100.64.0.2) via 203.0.113.22:41641 in 1.0ms",
		}},
		{"no pong", []string{"-c", "2"}, []localapi.PingResult{none}, 1, []string{
			"no pong from mac: magicsock: ping: no pong",
			"no pong from mac: magicsock: ping: no pong",
		}},
		{"never direct", []string{"--until-direct", "-c", "2"}, []localapi.PingResult{relayPong}, 1, []string{
			"pong from mac (100.64.0.2) via relay home in 12ms",
			"pong from mac (100.64.0.2) via relay home in 12ms",
		}},
		{"one lost, then a pong", []string{"-c", "2"}, []localapi.PingResult{none, relayPong}, 0, []string{
			"no pong from mac: magicsock: ping: no pong",
			"pong from mac (100.64.0.2) via relay home in 12ms",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := serveFake(t, &fakePinger{replies: tt.replies})
			args := append([]string{"--socket", sock, "ping", "--interval", "1ms"}, tt.args...)
			out, errs, code := weft(t, append(args, "mac")...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.wantCode, errs)
			}
			got := strings.Split(strings.TrimSpace(out), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(tt.want, "\n"))
			}
		})
	}
	t.Run("an unknown peer is said once", func(t *testing.T) {
		f := &fakePinger{replies: []localapi.PingResult{directPong}}
		sock := serveFake(t, f)
		out, errs, code := weft(t, "--socket", sock, "ping", "--interval", "1ms", "nosuch")
		if code != 1 || out != "" || strings.Count(errs, "no peer") != 1 || f.calls != 1 {
			t.Errorf("ping nosuch: exit %d, stdout %q, stderr %q, %d pings; want exit 1, the error once on stderr, one ping", code, out, errs, f.calls)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"ping", "-c", "0", "mac"},
			{"ping", "--interval", "-1s", "mac"},
			{"ping", "--timeout", "0s", "mac"},
		} {
			if _, errs, code := weft(t, args...); code != 2 || !strings.Contains(errs, "ping:") {
				t.Errorf("weft %s exited %d (%q), want 2 with what is wrong", strings.Join(args, " "), code, errs)
			}
		}
		if _, _, code := weft(t, "ping"); code != 2 {
			t.Errorf("ping without a peer exited %d, want 2", code)
		}
	})
}

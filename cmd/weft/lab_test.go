//go:build linux

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestLabUsageErrors checks that mistakes in `weft lab` flags are caught
// before anything is built (so they need no root) and exit 2 with a
// message naming the mistake.
func TestLabUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown topology", []string{"lab", "up", "moon"}, `unknown topology "moon" (known: double-nat, dual-stack, multihomed, seed, v6-only)`},
		{"no topology", []string{"lab", "up"}, "accepts 1 arg"},
		{"unknown site", []string{"lab", "up", "seed", "--nat", "r-seoul=easy"}, `unknown site "r-seoul"`},
		{"unknown NAT kind", []string{"lab", "up", "seed", "--nat", "r-busan=cone"}, `unknown NAT kind "cone"`},
		{"negative delay", []string{"lab", "up", "seed", "--delay", "r-busan=-5"}, "delay -5ms for r-busan out of range"},
		{"delay not a number", []string{"lab", "up", "seed", "--delay", "r-busan=soon"}, "whole milliseconds"},
		{"missing value", []string{"lab", "up", "seed", "--rate", "r-busan"}, "want SITE=VALUE"},
		{"negative rate", []string{"lab", "up", "seed", "--rate", "busan=-1"}, "rate -1"},
		{"MTU too small", []string{"lab", "up", "seed", "--mtu", "fukuoka=576"}, "MTU 576 for fukuoka out of range [1280, 1500]"},
		{"MTU not a number", []string{"lab", "up", "seed", "--mtu", "fukuoka=big"}, "MTU is whole bytes"},
		{"UDP timeout not a duration", []string{"lab", "up", "seed", "--udp-timeout", "r-busan=30"}, "want a duration such as 30s"},
		{"UDP timeout below a second", []string{"lab", "up", "seed", "--udp-timeout", "r-busan=500ms"}, "below conntrack's 1 s resolution"},
		{"unknown IPv6 mode", []string{"lab", "up", "seed", "--ipv6", "r-busan=v6"}, `unknown IPv6 mode "v6"`},
		{"IPv6 behind an upstream", []string{"lab", "up", "double-nat", "--ipv6", "fukuoka=dual"}, "IPv6 is not supported behind an upstream"},
		{"two mistakes", []string{"lab", "up", "seed", "--nat", "x=easy", "--delay", "r-busan=-1"}, `unknown site "x"`},
		{"bad lab name", []string{"lab", "--name", "My-Lab", "status"}, `lab name "My-Lab"`},
		{"exec without command", []string{"lab", "exec", "mac"}, "requires at least 2 arg"},
		{"ping count", []string{"lab", "ping", "busan", "ctrl", "-c", "0"}, "-c 0"},
		{"unknown lab flag", []string{"lab", "up", "seed", "--jitter", "5"}, "unknown flag: --jitter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.wantErr)
			}
		})
	}
}

func TestLabNotUp(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"lab", "--name", "nosuchlab0", "status"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), `lab "nosuchlab0" is not up`) {
		t.Errorf("exit %d, stderr %q; want 1 and a hint that the lab is not up", code, errb.String())
	}
}

// TestLabHints: every command `weft lab up` suggests names the lab, so a
// lab made with --name demo is the one they reach.
func TestLabHints(t *testing.T) {
	for _, name := range []string{"weft", "demo"} {
		t.Run(name, func(t *testing.T) {
			out := labHints(name)
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "weft lab ") && !strings.Contains(line, "weft lab --name "+name+" ") {
					t.Errorf("hint %q does not name the lab %s", line, name)
				}
			}
			if strings.Count(out, "--name "+name) != 3 {
				t.Errorf("want 3 hints naming the lab:\n%s", out)
			}
		})
	}
}

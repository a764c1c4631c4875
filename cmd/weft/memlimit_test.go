package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"weft/internal/agent"
	"weft/internal/inflight"
)

func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, flag, env string
		want            memoryPlan
		wantErr         string
	}{
		{name: "default", want: memoryPlan{limit: agent.DefaultMemoryLimit, byDefault: true}},
		{name: "GOMEMLIMIT off", env: "off", want: memoryPlan{limit: agent.DefaultMemoryLimit, byDefault: true}},
		{name: "flag", flag: "48MiB", want: memoryPlan{limit: 48 << 20, inFlight: 42}},
		{name: "flag in MB", flag: "100MB", want: memoryPlan{limit: 100e6, inFlight: inflight.DefaultMax}},
		{name: "flag wins over env", flag: "48MiB", env: "1GiB", want: memoryPlan{limit: 48 << 20, inFlight: 42}},
		{name: "env keeps the runtime's limit", env: "44MiB", want: memoryPlan{inFlight: 32}},
		{name: "bad size", flag: "lots", wantErr: `"lots" is not a size`},
		{name: "negative", flag: "-5MiB", wantErr: "is not a size"},
		{name: "too small", flag: "8MiB", wantErr: "below the 32 MiB"},
		{name: "bad env", env: "x", wantErr: "$GOMEMLIMIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemoryLimit(tc.flag, func(string) string { return tc.env })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseMemoryLimit = %+v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseMemoryLimit = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"48MiB", 48 << 20}, {"1GiB", 1 << 30}, {"512KiB", 512 << 10},
		{"64MB", 64e6}, {"1.5GB", 1.5e9}, {"1000000", 1e6}, {"100B", 100},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// TestMemoryPlanApply: the default limit is set only with a kernel TUN; a
// limit that was asked for is set always.
func TestMemoryPlanApply(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	for _, tc := range []struct {
		name   string
		plan   memoryPlan
		kernel bool
		want   int64
	}{
		{"default, kernel", memoryPlan{limit: 56 << 20, byDefault: true}, true, 56 << 20},
		{"default, userspace", memoryPlan{limit: 56 << 20, byDefault: true}, false, before},
		{"asked for, userspace", memoryPlan{limit: 48 << 20}, false, 48 << 20},
		{"from $GOMEMLIMIT", memoryPlan{inFlight: 32}, true, before},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(before)
			tc.plan.apply(tc.kernel)
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("memory limit %d, want %d", got, tc.want)
			}
		})
	}
}

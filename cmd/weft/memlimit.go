package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"weft/internal/agent"
)

// memoryPlan is the daemon's Go memory limit and the in-flight bound of
// its WireGuard device (packets per direction) that the limit buys.
type memoryPlan struct {
	limit    int64 // 0: leave the runtime's ($GOMEMLIMIT) alone
	inFlight int
	// byDefault is set when neither --memory-limit nor $GOMEMLIMIT
	// chose the limit.
	byDefault bool
}

// parseMemoryLimit reads --memory-limit. Empty means the default: the
// limit that fits the default in-flight bound, unless $GOMEMLIMIT sets one
// (then the bound is derived from it and the runtime keeps it).
func parseMemoryLimit(s string, getenv func(string) string) (memoryPlan, error) {
	if s == "" {
		env := getenv("GOMEMLIMIT")
		if env == "" || env == "off" {
			return memoryPlan{limit: agent.DefaultMemoryLimit, byDefault: true}, nil
		}
		n, err := parseSize(env)
		if err != nil {
			return memoryPlan{}, fmt.Errorf("daemon: $GOMEMLIMIT: %w", err)
		}
		inFlight, err := agent.InFlightFor(n)
		if err != nil {
			return memoryPlan{}, fmt.Errorf("daemon: $GOMEMLIMIT: %w", err)
		}
		return memoryPlan{inFlight: inFlight}, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return memoryPlan{}, fmt.Errorf("daemon: --memory-limit: %w", err)
	}
	inFlight, err := agent.InFlightFor(n)
	if err != nil {
		return memoryPlan{}, fmt.Errorf("daemon: --memory-limit: %w", err)
	}
	return memoryPlan{limit: n, inFlight: inFlight}, nil
}

// apply sets the process's Go memory limit. The default limit is sized
// for the kernel data plane's buffers; a userspace network stack keeps
// TCP buffers of several MB per connection beside them, which it does not
// count, so there (and with no data plane) only a limit that was asked
// for is set.
func (p memoryPlan) apply(kernel bool) {
	if p.limit > 0 && (kernel || !p.byDefault) {
		debug.SetMemoryLimit(p.limit)
	}
}

// sizeUnits are the suffixes parseSize knows, longest first.
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"B", 1},
}

// parseSize reads a byte count such as 48MiB, 64MB or 50000000, in the
// units $GOMEMLIMIT takes (B, KiB, MiB, GiB) and their decimal cousins.
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = v, u.bytes
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || n*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a size: write it like 48MiB, 64MB or 1GiB", s)
	}
	return int64(n * float64(mult)), nil
}

// sizeString writes n bytes in MiB, as the flag's help shows it.
func sizeString(n int64) string { return strconv.FormatInt(n>>20, 10) + "MiB" }

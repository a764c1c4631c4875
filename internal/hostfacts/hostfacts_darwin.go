//go:build darwin

package hostfacts

import (
	"context"
	"encoding/binary"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// Read returns this machine's facts: power and battery (`pmset -g
// batt`), load (sysctl vm.loadavg) and uptime (sysctl kern.boottime).
// Memory and Wi-Fi signal are not read on macOS yet.
func Read() map[string]float64 {
	facts := map[string]float64{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "/usr/bin/pmset", "-g", "batt").Output(); err == nil {
		parsePmset(string(out), facts)
	}
	// struct loadavg { fixpt_t ldavg[3]; long fscale; }
	if b, err := unix.SysctlRaw("vm.loadavg"); err == nil && len(b) >= 24 {
		ld := binary.NativeEndian.Uint32(b[0:4])
		scale := binary.NativeEndian.Uint64(b[16:24])
		if scale != 0 {
			facts[Load1] = float64(ld) / float64(scale)
		}
	}
	if tv, err := unix.SysctlTimeval("kern.boottime"); err == nil {
		facts[UptimeSeconds] = time.Since(time.Unix(tv.Unix())).Seconds()
	}
	return facts
}

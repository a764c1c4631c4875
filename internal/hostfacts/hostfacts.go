// Package hostfacts reads the facts about the machine that a node's health
// samples carry: battery charge and whether it runs on AC, Wi-Fi signal,
// load, memory and uptime. A fact the machine does not expose is absent
// from the result, never zero: a desktop has no battery, a wired machine
// no Wi-Fi signal.
//
// The Linux parsers read an fs.FS rooted at "/", so they are tested on
// any OS against files written by the test; Read (hostfacts_linux.go)
// gives them the real root. On macOS and Windows Read asks the OS
// (hostfacts_darwin.go, hostfacts_windows.go) and hands what it says to
// the parsers of power.go, which are tested on Linux too.
package hostfacts

import (
	"bufio"
	"bytes"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// Metric names, as in wire.HealthSample (docs/health.md).
const (
	BatteryPct     = "battery_pct"
	OnAC           = "on_ac"
	WiFiSignalDBm  = "wifi_signal_dbm"
	WiFiQuality    = "wifi_quality"
	Load1          = "load1"
	MemUsedPct     = "mem_used_pct"
	MemAvailBytes  = "mem_avail_bytes"
	UptimeSeconds  = "uptime_s"
	powerSupplyDir = "sys/class/power_supply"
)

// FromFS reads every fact root has into a new map.
func FromFS(root fs.FS) map[string]float64 {
	out := map[string]float64{}
	powerSupply(root, out)
	wireless(root, out)
	loadavg(root, out)
	meminfo(root, out)
	uptime(root, out)
	return out
}

func readTrim(root fs.FS, name string) (string, bool) {
	b, err := fs.ReadFile(root, name)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// powerSupply reads /sys/class/power_supply: the mean charge of the
// batteries that report one, and whether any mains supply is online. A
// machine with neither directory entry has neither fact.
func powerSupply(root fs.FS, out map[string]float64) {
	ents, err := fs.ReadDir(root, powerSupplyDir)
	if err != nil {
		return
	}
	var sum float64
	var n int
	ac, haveAC := false, false
	for _, e := range ents {
		dir := path.Join(powerSupplyDir, e.Name())
		typ, _ := readTrim(root, path.Join(dir, "type"))
		switch typ {
		case "Battery":
			if s, ok := readTrim(root, path.Join(dir, "capacity")); ok {
				if v, err := strconv.ParseFloat(s, 64); err == nil {
					sum += v
					n++
				}
			}
		case "Mains", "USB", "USB_C", "USB_PD":
			if s, ok := readTrim(root, path.Join(dir, "online")); ok {
				haveAC = true
				ac = ac || s == "1"
			}
		}
	}
	if n > 0 {
		out[BatteryPct] = sum / float64(n)
	}
	if haveAC {
		out[OnAC] = 0
		if ac {
			out[OnAC] = 1
		}
	}
}

// wireless reads /proc/net/wireless: the first interface's link quality
// (out of 70, as drivers report it, turned into a percentage) and signal
// level in dBm. The file has two header lines; a wired machine has no
// interface lines.
func wireless(root fs.FS, out map[string]float64) {
	b, err := fs.ReadFile(root, "proc/net/wireless")
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for i := 0; sc.Scan(); i++ {
		if i < 2 {
			continue
		}
		_, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 3 {
			continue
		}
		if q, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "."), 64); err == nil {
			out[WiFiQuality] = min(100, q/70*100)
		}
		if l, err := strconv.ParseFloat(strings.TrimSuffix(f[2], "."), 64); err == nil && l != 0 {
			if l > 0 {
				l -= 256 // some drivers report the level as an unsigned byte
			}
			out[WiFiSignalDBm] = l
		}
		return
	}
}

func loadavg(root fs.FS, out map[string]float64) {
	if v, ok := firstNumber(root, "proc/loadavg"); ok {
		out[Load1] = v
	}
}

// firstNumber reads the first whitespace-separated field of a /proc file
// as a number, as /proc/loadavg and /proc/uptime start with the one
// figure weft wants.
func firstNumber(root fs.FS, name string) (float64, bool) {
	s, ok := readTrim(root, name)
	if !ok {
		return 0, false
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

func meminfo(root fs.FS, out map[string]float64) {
	b, err := fs.ReadFile(root, "proc/meminfo")
	if err != nil {
		return
	}
	var total, avail float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch k {
		case "MemTotal":
			total = n * 1024
		case "MemAvailable":
			avail = n * 1024
		}
	}
	if total > 0 && avail > 0 {
		out[MemAvailBytes] = avail
		out[MemUsedPct] = (total - avail) / total * 100
	}
}

func uptime(root fs.FS, out map[string]float64) {
	if v, ok := firstNumber(root, "proc/uptime"); ok {
		out[UptimeSeconds] = v
	}
}

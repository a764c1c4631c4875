package hostfacts

import (
	"regexp"
	"strconv"
	"strings"
)

// The parsers below turn what macOS and Windows report into facts. They
// are here, without OS calls, so that their tests run on Linux CI.

// pmsetPercent finds a battery line's charge in `pmset -g batt` output.
var pmsetPercent = regexp.MustCompile(`(?m)^\s*-\S*Battery\S*.*?\t(\d{1,3})%;`)

// parsePmset reads `pmset -g batt` (macOS): its first line says where
// power comes from ("Now drawing from 'AC Power'" or "'Battery Power'"),
// and each battery has a line with its charge. A Mac without a battery
// (a Mac mini) has the first line only: on AC, no charge.
func parsePmset(out string, facts map[string]float64) {
	first, _, _ := strings.Cut(out, "\n")
	switch {
	case strings.Contains(first, "'AC Power'"):
		facts[OnAC] = 1
	case strings.Contains(first, "'Battery Power'"), strings.Contains(first, "'UPS Power'"):
		facts[OnAC] = 0
	}
	ms := pmsetPercent.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		return
	}
	var sum float64
	for _, m := range ms {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	facts[BatteryPct] = sum / float64(len(ms))
}

// Values of SYSTEM_POWER_STATUS (GetSystemPowerStatus, Windows) that mean
// "unknown" or "no battery".
const (
	winACUnknown      = 255
	winNoBattery      = 128
	winBatteryUnknown = 255
	winPercentUnknown = 255
)

// windowsPower turns SYSTEM_POWER_STATUS's fields into facts.
func windowsPower(acLineStatus, batteryFlag, batteryLifePercent byte, facts map[string]float64) {
	if acLineStatus != winACUnknown {
		facts[OnAC] = float64(acLineStatus & 1)
	}
	if batteryFlag&winNoBattery != 0 || batteryFlag == winBatteryUnknown || batteryLifePercent == winPercentUnknown || batteryLifePercent > 100 {
		return
	}
	facts[BatteryPct] = float64(batteryLifePercent)
}

// wlanQualityToDBm is how Windows maps a WLAN signal quality of 0–100 to
// an RSSI: linearly from -100 dBm (0) to -50 dBm (100).
func wlanQualityToDBm(q uint32) float64 { return -100 + float64(min(q, 100))/2 }

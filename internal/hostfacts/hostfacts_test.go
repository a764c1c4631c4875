package hostfacts

import (
	"maps"
	"testing"
	"testing/fstest"
)

func TestFromFS(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	laptop := fstest.MapFS{
		"sys/class/power_supply/BAT0/type":     file("Battery\n"),
		"sys/class/power_supply/BAT0/capacity": file("85\n"),
		"sys/class/power_supply/AC/type":       file("Mains\n"),
		"sys/class/power_supply/AC/online":     file("1\n"),
		"proc/net/wireless": file("Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n" +
			" face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n" +
			"wlp2s0: 0000   63.  -47.  -256        0      0      0      0     12        0\n"),
		"proc/loadavg": file("0.52 0.40 0.31 1/300 4242\n"),
		"proc/meminfo": file("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n"),
		"proc/uptime":  file("93784.12 180000.00\n"),
	}
	tests := []struct {
		name string
		fs   fstest.MapFS
		want map[string]float64
	}{
		{"laptop", laptop, map[string]float64{
			BatteryPct: 85, OnAC: 1, WiFiQuality: 90, WiFiSignalDBm: -47, Load1: 0.52,
			MemAvailBytes: 4000000 * 1024, MemUsedPct: 75, UptimeSeconds: 93784.12,
		}},
		{"on battery, level as unsigned byte", fstest.MapFS{
			"sys/class/power_supply/BAT0/type":     file("Battery"),
			"sys/class/power_supply/BAT0/capacity": file("40"),
			"sys/class/power_supply/ADP1/type":     file("Mains"),
			"sys/class/power_supply/ADP1/online":   file("0"),
			"proc/net/wireless":                    file("h1\nh2\n wlan0: 0000   35.  209.  0 0 0 0 0 0 0\n"),
		}, map[string]float64{BatteryPct: 40, OnAC: 0, WiFiQuality: 50, WiFiSignalDBm: -47}},
		{"wired desktop: no battery, no Wi-Fi line, absent not zero", fstest.MapFS{
			"sys/class/power_supply/AC/type": file("Mains"),
			"proc/net/wireless":              file("h1\nh2\n"),
			"proc/uptime":                    file("12.5 3.0"),
		}, map[string]float64{UptimeSeconds: 12.5}},
		{"nothing", fstest.MapFS{}, map[string]float64{}},
		{"garbage", fstest.MapFS{
			"proc/loadavg":                         file("x y"),
			"proc/meminfo":                         file("MemTotal: lots\n"),
			"sys/class/power_supply/BAT0/type":     file("Battery"),
			"sys/class/power_supply/BAT0/capacity": file("unknown"),
			"proc/net/wireless":                    file("h\nh\nwlan0: 0 x y\n"),
			"proc/uptime":                          file(""),
			"sys/class/power_supply/BAT1/capacity": file("50"), // no type
		}, map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromFS(tt.fs)
			if !maps.EqualFunc(got, tt.want, func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

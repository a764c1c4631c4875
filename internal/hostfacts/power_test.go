package hostfacts

import (
	"reflect"
	"testing"
)

func TestParsePmset(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want map[string]float64
	}{
		{"laptop on AC", "Now drawing from 'AC Power'\n -InternalBattery-0 (id=4653155)\t85%; charged; 0:00 remaining present: true\n",
			map[string]float64{OnAC: 1, BatteryPct: 85}},
		{"laptop on battery", "Now drawing from 'Battery Power'\n -InternalBattery-0 (id=4653155)\t42%; discharging; 3:12 remaining present: true\n",
			map[string]float64{OnAC: 0, BatteryPct: 42}},
		{"Mac mini", "Now drawing from 'AC Power'\n", map[string]float64{OnAC: 1}},
		{"nothing", "", map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]float64{}
			parsePmset(tt.out, got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWindowsPower(t *testing.T) {
	tests := []struct {
		name          string
		ac, flag, pct byte
		want          map[string]float64
	}{
		{"laptop on AC, charging", 1, 8, 91, map[string]float64{OnAC: 1, BatteryPct: 91}},
		{"laptop on battery", 0, 0, 37, map[string]float64{OnAC: 0, BatteryPct: 37}},
		{"desktop: no system battery", 1, 128, 255, map[string]float64{OnAC: 1}},
		{"all unknown", 255, 255, 255, map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]float64{}
			windowsPower(tt.ac, tt.flag, tt.pct, got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWLANQualityToDBm(t *testing.T) {
	for q, want := range map[uint32]float64{0: -100, 50: -75, 100: -50, 250: -50} {
		if got := wlanQualityToDBm(q); got != want {
			t.Errorf("quality %d → %v dBm, want %v", q, got, want)
		}
	}
}

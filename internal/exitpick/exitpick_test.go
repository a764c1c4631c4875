package exitpick

import (
	"strings"
	"testing"
	"time"

	"weft/internal/wire"
)

const (
	busan wire.NodeID = 1
	pc    wire.NodeID = 2
	seoul wire.NodeID = 3
)

var names = map[wire.NodeID]string{busan: "busan", pc: "pc", seoul: "seoul"}

// st is a candidate's state in a round: "up" (online, answers), "mute"
// (online, no pong), "off" (offline in the map).
func round(rtts map[wire.NodeID]time.Duration, states ...string) []Candidate {
	var out []Candidate
	for i, s := range states {
		id := wire.NodeID(i + 1)
		out = append(out, Candidate{ID: id, Name: names[id], Online: s != "off", Answered: s == "up", RTT: rtts[id]})
	}
	return out
}

func TestPickerList(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name   string
		states []string // busan, pc
		want   wire.NodeID
		why    string // a switch's reason contains this; "" for no switch
	}{
		{"start: busan first", []string{"up", "up"}, busan, "first choice"},
		{"steady", []string{"up", "up"}, busan, ""},
		{"one missed pong is not a failure", []string{"mute", "up"}, busan, ""},
		{"two", []string{"mute", "up"}, busan, ""},
		{"three: fail over", []string{"mute", "up"}, pc, "busan stopped answering pings (3 missed)"},
		{"busan answers again: not yet", []string{"up", "up"}, pc, ""},
		{"twice", []string{"up", "up"}, pc, ""},
		{"three times, but within MinDwell of the switch", []string{"up", "up"}, pc, ""},
		{"held", []string{"up", "up"}, pc, ""},
		{"dwell over: back to busan", []string{"up", "up"}, busan, "busan is back"},
		{"busan offline in the map: at once", []string{"off", "up"}, pc, "busan went offline"},
		{"both gone: pc stays, traffic waits", []string{"off", "off"}, pc, ""},
		{"pc back, busan not", []string{"off", "up"}, pc, ""},
	}
	var p Picker
	for i, s := range steps {
		now := t0.Add(time.Duration(i) * 2 * time.Second)
		got, why := p.Observe(now, round(nil, s.states...))
		if got != s.want || (s.why == "") != (why == "") || !strings.Contains(why, s.why) {
			t.Fatalf("step %d %q: got %s (%q), want %s (%q)", i, s.name, names[got], why, names[s.want], s.why)
		}
	}
}

func TestPickerListNothingUsable(t *testing.T) {
	var p Picker
	if got, why := p.Observe(time.Now(), round(nil, "off", "mute")); got != 0 || why != "" {
		t.Errorf("with nothing usable: %v %q", got, why)
	}
}

func TestPickerAuto(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ms := func(b, p, s int) map[wire.NodeID]time.Duration {
		return map[wire.NodeID]time.Duration{busan: time.Duration(b) * time.Millisecond, pc: time.Duration(p) * time.Millisecond, seoul: time.Duration(s) * time.Millisecond}
	}
	p := Picker{Auto: true}
	now := t0
	step := func(rtts map[wire.NodeID]time.Duration, states ...string) (wire.NodeID, string) {
		now = now.Add(2 * time.Second)
		return p.Observe(now, round(rtts, states...))
	}
	if got, why := step(ms(50, 20, 80), "up", "up", "up"); got != pc || why != "first choice" {
		t.Fatalf("first: %s %q; want the fastest, pc", names[got], why)
	}
	// busan becomes a bit faster: not clearly, so pc stays.
	for range 20 {
		if got, _ := step(ms(17, 20, 80), "up", "up", "up"); got != pc {
			t.Fatalf("moved to %s for a small gain", names[got])
		}
	}
	// seoul becomes much faster: after AutoDwell, auto moves.
	var got wire.NodeID
	var why string
	for range 20 {
		if got, why = step(ms(17, 20, 2), "up", "up", "up"); got == seoul {
			break
		}
	}
	if got != seoul || !strings.Contains(why, "seoul answers faster") {
		t.Fatalf("auto stayed on %s (%q) with seoul ten times faster", names[got], why)
	}
	// seoul goes away: the fastest of the rest.
	if got, why := step(ms(17, 20, 2), "up", "up", "off"); got != busan || why != "seoul went offline" {
		t.Errorf("after seoul went offline: %s %q", names[got], why)
	}
}

package healthlog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/wire"
)

var t0 = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

func event(i int) localapi.HealthEvent {
	return localapi.HealthEvent{Time: t0.Add(time.Duration(i) * time.Second), Kind: localapi.EventProblem, Text: fmt.Sprintf("problem %d", i)}
}

func texts(evs []localapi.HealthEvent) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Text)
	}
	return strings.Join(s, ", ")
}

func TestLogKeepsNewestAcrossReopenAndRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "health.jsonl")
	l, err := Open(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := l.Add(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := texts(l.Events()); got != "problem 7, problem 8, problem 9" {
		t.Fatalf("in memory: %s", got)
	}
	// The file is rewritten once it reaches twice what is kept, so it
	// never holds more than that.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 6 {
		t.Errorf("file has %d lines, want at most 6", n)
	}
	l2, err := Open(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(l2.Events()); got != "problem 7, problem 8, problem 9" {
		t.Fatalf("after reopening: %s", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestOpenSkipsDamagedLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "health.jsonl")
	good := `{"time":"2026-11-26T03:00:00Z","kind":"problem","text":"UDP is blocked"}`
	content := good + "\n" + "{not json\n" + `{"kind":"problem","text":"no time"}` + "\n" + good[:20] // cut short by a crash
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(l.Events()); got != "UDP is blocked" || l.Damaged() != 3 {
		t.Fatalf("events %q, damaged %d; want the one good line and 3 damaged", got, l.Damaged())
	}
	// The next event does not join the line cut short: the file is
	// rewritten whole.
	if err := l.Add(event(1)); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(l2.Events()); got != "UDP is blocked, problem 1" || l2.Damaged() != 0 {
		t.Fatalf("after adding to a damaged file: %q, %d damaged", got, l2.Damaged())
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "x"), 0); err != nil {
		t.Errorf("a missing file is an empty history, got %v", err)
	}
}

// peer is a status entry for a peer.
func peer(name string, online bool, kind, where string) *localapi.PeerStatus {
	p := &localapi.PeerStatus{Node: &wire.Node{Name: name, Online: online}, Path: localapi.Path{Kind: kind}}
	switch kind {
	case localapi.PathDirect:
		p.Path.Endpoint = where
	case localapi.PathRelay:
		p.Path.RelayCode = where
	}
	return p
}

func TestWatcher(t *testing.T) {
	running := func(health []string, peers ...*localapi.PeerStatus) *localapi.Status {
		return &localapi.Status{BackendState: localapi.StateRunning, Health: health, Peers: peers}
	}
	steps := []struct {
		name string
		st   *localapi.Status
		want []string // kind: text
	}{
		{"start", running([]string{"control server unreachable: connection refused"}, peer("busan", true, localapi.PathNone, ""), peer("pc", false, localapi.PathNone, "")),
			[]string{"state: daemon started; state Running", "peer: pc is offline"}},
		{"a blip is not recorded", running(nil, peer("busan", true, localapi.PathRelay, "home"), peer("pc", false, localapi.PathNone, "")),
			nil},
		{"relay, then direct", running(nil, peer("busan", true, localapi.PathDirect, "203.0.113.21:41641"), peer("pc", true, localapi.PathNone, "")),
			[]string{"path: busan: relay home → direct 203.0.113.21:41641", "peer: pc is back online"}},
		{"a problem, seen once", running([]string{"UDP is blocked on this network: slower"}, peer("busan", true, localapi.PathRelay, "home"), peer("pc", true, localapi.PathNone, "")),
			[]string{"path: busan: direct 203.0.113.21:41641 → relay home"}},
		{"seen twice, recorded; idle keeps the path", running([]string{"UDP is blocked on this network: slower", "this node's key expires in 100h0m0s: renew"}, peer("busan", true, localapi.PathNone, ""), peer("pc", true, localapi.PathNone, "")),
			[]string{"problem: UDP is blocked on this network: slower"}},
		{"new wording, same problem", running([]string{"UDP is blocked on this network: slower", "this node's key expires in 99h0m0s: renew"}, peer("busan", true, localapi.PathRelay, "home"), peer("pc", true, localapi.PathNone, "")),
			[]string{"problem: this node's key expires in 99h0m0s: renew"}},
		{"resolved; pc gone from the map", running(nil, peer("busan", false, localapi.PathRelay, "home")),
			[]string{"resolved: UDP is blocked on this network: slower", "resolved: this node's key expires in 99h0m0s: renew", "peer: busan went offline"}},
		{"down", &localapi.Status{BackendState: localapi.StateStopped},
			[]string{"state: state Running → Stopped"}},
	}
	var w Watcher
	for i, s := range steps {
		now := t0.Add(time.Duration(i) * 5 * time.Second)
		evs := w.Observe(s.st, now)
		var got []string
		for _, e := range evs {
			got = append(got, e.Kind+": "+e.Text)
			if !e.Time.Equal(now) {
				t.Errorf("%s: event time %v, want %v", s.name, e.Time, now)
			}
		}
		if strings.Join(got, " | ") != strings.Join(s.want, " | ") {
			t.Errorf("%s:\n got %q\nwant %q", s.name, got, s.want)
		}
	}
}

func TestProblemKey(t *testing.T) {
	tests := []struct{ a, b string }{
		{"this node's key expires in 100h0m0s: run `weft up`", "this node's key expires in 99h0m0s: run `weft up`"},
		{"control server unreachable: dial tcp 203.0.113.10:8080: refused; existing", "control server unreachable: EOF; existing"},
		{"no relay reachable (dial: refused): peers", "no relay reachable: peers"},
	}
	for _, tt := range tests {
		if problemKey(tt.a) != problemKey(tt.b) {
			t.Errorf("%q and %q are different problems: %q vs %q", tt.a, tt.b, problemKey(tt.a), problemKey(tt.b))
		}
	}
	if problemKey("UDP is blocked on this network: x") == problemKey("no relay reachable: x") {
		t.Error("different problems share a key")
	}
}

// FuzzOpen reads arbitrary history files: Open never fails on content,
// keeps only whole events, and a reopened history appends cleanly.
func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-26T03:00:00Z","kind":"problem","text":"x"}` + "\n"))
	f.Add([]byte("{\n}\n\x00\xff"))
	f.Add([]byte(strings.Repeat("a", maxLine+10)))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "health.jsonl")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path, 5)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		evs := l.Events()
		if len(evs) > 5 {
			t.Fatalf("%d events kept, want at most 5", len(evs))
		}
		for _, e := range evs {
			if e.Kind == "" || e.Time.IsZero() {
				t.Fatalf("kept an event without kind or time: %+v", e)
			}
		}
		if err := l.Add(event(1)); err != nil {
			t.Fatalf("Add after Open: %v", err)
		}
		l2, err := Open(path, 5)
		if err != nil {
			t.Fatal(err)
		}
		evs = l2.Events()
		if len(evs) == 0 || evs[len(evs)-1].Text != "problem 1" || l2.Damaged() != 0 {
			t.Fatalf("after Add and reopen: %d events, last %+v, %d damaged; want the added event last and a clean file", len(evs), evs[len(evs)-1:], l2.Damaged())
		}
	})
}

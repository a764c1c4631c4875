// Package healthlog keeps a node's health history: what went wrong and
// when, which peer's path moved between direct and relay, who went
// offline. A node left alone for days (the seed's laptop in Busan) is
// looked at after the fact; `weft health` reads this history.
//
// The history is a file of JSON lines in the daemon's state dir, so it
// survives restarts. It is appended to, and rewritten with only its newest
// events once it has grown to twice the number kept.
package healthlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"weft/internal/localapi"
	"weft/internal/nodestate"
)

// DefaultKeep is how many events a Log keeps unless told otherwise.
const DefaultKeep = 1000

// maxLine bounds one event's line; longer lines are damaged.
const maxLine = 16 << 10

// Log is a bounded, persistent list of health events. It is safe for
// concurrent use.
type Log struct {
	path string
	keep int

	mu      sync.Mutex
	events  []localapi.HealthEvent // guarded by mu; newest last, at most keep
	lines   int                    // guarded by mu; lines in the file
	damaged int                    // lines skipped when the file was read
	// rewrite is set when the file is not a clean list of lines (a line
	// cut short by a crash): the next Add rewrites it rather than append
	// to the broken line. Guarded by mu.
	rewrite bool
}

// Open reads the history at path (a missing file is an empty history) and
// keeps the newest keep events (DefaultKeep if keep <= 0). Damaged lines,
// such as one cut short by a crash, are skipped and counted.
func Open(path string, keep int) (*Log, error) {
	if keep <= 0 {
		keep = DefaultKeep
	}
	l := &Log{path: path, keep: keep}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("healthlog: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		l.lines++
		var ev localapi.HealthEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Kind == "" || ev.Time.IsZero() {
			l.damaged++
			continue
		}
		l.events = append(l.events, ev)
	}
	if err := sc.Err(); err != nil {
		// A line longer than maxLine: keep what was read before it.
		l.damaged++
	}
	if len(l.events) > keep {
		l.events = l.events[len(l.events)-keep:]
	}
	l.rewrite = l.damaged > 0 || (len(b) > 0 && b[len(b)-1] != '\n')
	return l, nil
}

// Damaged is how many lines of the file Open could not read.
func (l *Log) Damaged() int { return l.damaged }

// Events returns the kept events, oldest first.
func (l *Log) Events() []localapi.HealthEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]localapi.HealthEvent(nil), l.events...)
}

// Add records evs, in memory and in the file.
func (l *Log) Add(evs ...localapi.HealthEvent) error {
	if len(evs) == 0 {
		return nil
	}
	var buf bytes.Buffer
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("healthlog: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, evs...)
	if len(l.events) > l.keep {
		l.events = l.events[len(l.events)-l.keep:]
	}
	if l.rewrite || l.lines+len(evs) > 2*l.keep {
		return l.rewriteLocked()
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("healthlog: %w", err)
	}
	_, err = f.Write(buf.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("healthlog: %w", err)
	}
	l.lines += len(evs)
	return nil
}

// rewriteLocked replaces the file with the kept events, atomically.
func (l *Log) rewriteLocked() error {
	var buf bytes.Buffer
	for _, ev := range l.events {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("healthlog: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := nodestate.WriteFileAtomic(l.path, buf.Bytes()); err != nil {
		return fmt.Errorf("healthlog: %w", err)
	}
	l.lines = len(l.events)
	l.rewrite = false
	return nil
}

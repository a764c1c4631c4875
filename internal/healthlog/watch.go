package healthlog

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"

	"weft/internal/localapi"
)

// Watcher turns successive status snapshots into events. The zero value
// is ready; it is not safe for concurrent use.
type Watcher struct {
	started  bool
	state    string
	pending  map[string]string        // problemKey → text: seen once, not recorded yet
	problems map[string]string        // problemKey → the text recorded
	paths    map[string]localapi.Path // peer name → last path that was in use
	online   map[string]bool          // peer name → online
}

// Observe compares st with the previous snapshot and returns what changed.
// The first snapshot yields a "daemon started" event and the offline peers
// it already shows. A problem is recorded once two snapshots in a row show
// it, so a blip (the control connection still being set up when the daemon
// starts) does not fill the history.
func (w *Watcher) Observe(st *localapi.Status, now time.Time) []localapi.HealthEvent {
	var out []localapi.HealthEvent
	add := func(kind, peer, text string) {
		out = append(out, localapi.HealthEvent{Time: now, Kind: kind, Peer: peer, Text: text})
	}
	if !w.started {
		w.started = true
		w.pending, w.problems = map[string]string{}, map[string]string{}
		w.paths, w.online = map[string]localapi.Path{}, map[string]bool{}
		add(localapi.EventState, "", "daemon started; state "+st.BackendState)
	} else if st.BackendState != w.state {
		add(localapi.EventState, "", fmt.Sprintf("state %s → %s", w.state, st.BackendState))
	}
	w.state = st.BackendState

	// Problems, by identity: a problem whose wording changes (a key that
	// expires in 5 days, then in 4) is still the same problem.
	seen := map[string]bool{}
	for _, h := range st.Health {
		k := problemKey(h)
		seen[k] = true
		if _, ok := w.problems[k]; ok {
			continue
		}
		if _, ok := w.pending[k]; !ok {
			w.pending[k] = h
			continue
		}
		delete(w.pending, k)
		w.problems[k] = h
		add(localapi.EventProblem, "", h)
	}
	for k := range w.pending {
		if !seen[k] {
			delete(w.pending, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(w.problems)) {
		if !seen[k] {
			add(localapi.EventResolved, "", w.problems[k])
			delete(w.problems, k)
		}
	}

	// Peers: online and offline, and paths between direct and relay. An
	// idle peer (no traffic) keeps the path it last had: idleness is
	// not a change of path.
	present := map[string]bool{}
	for _, p := range st.Peers {
		if p == nil || p.Node == nil {
			continue
		}
		name := p.Name
		present[name] = true
		was, known := w.online[name]
		switch {
		case !known && !p.Online && st.BackendState == localapi.StateRunning:
			add(localapi.EventPeer, name, name+" is offline")
		case known && was && !p.Online:
			add(localapi.EventPeer, name, name+" went offline")
		case known && !was && p.Online:
			add(localapi.EventPeer, name, name+" is back online")
		}
		w.online[name] = p.Online
		if p.Path.Kind == localapi.PathNone {
			continue
		}
		if prev, ok := w.paths[name]; ok && prev.Kind != p.Path.Kind {
			add(localapi.EventPath, name, fmt.Sprintf("%s: %s → %s", name, prev, p.Path))
		}
		w.paths[name] = p.Path
	}
	for name := range w.online {
		if !present[name] {
			delete(w.online, name)
			delete(w.paths, name)
		}
	}
	return out
}

// problemKey is a health line's identity: the words before its details
// (after the first ':', '(' or ';'), with numbers left out.
func problemKey(h string) string {
	if i := strings.IndexAny(h, ":(;"); i >= 0 {
		h = h[:i]
	}
	var b strings.Builder
	digits := false
	for _, r := range strings.TrimSpace(h) {
		if unicode.IsDigit(r) {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(r)
	}
	return b.String()
}

// Watch records the events of a status snapshot taken every interval
// until ctx ends. A failing snapshot or write is logged and skipped.
func Watch(ctx context.Context, l *Log, interval time.Duration, status func(context.Context) (*localapi.Status, error), log *slog.Logger) {
	var w Watcher
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, interval)
		st, err := status(sctx)
		cancel()
		if err != nil {
			log.Debug("health history: status", "err", err)
		} else if err := l.Add(w.Observe(st, time.Now())...); err != nil {
			log.Warn("health history not recorded", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

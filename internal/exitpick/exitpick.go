// Package exitpick decides which exit node a node uses when the user gave
// more than one: an ordered list (`weft set --exit-node=busan,pc`: the
// first that works) or `auto` (the approved exit node that answers
// fastest). The daemon pings the candidates every few seconds and hands
// each round to a Picker, which answers with the exit node to use and, on
// a switch, why. docs/exit-nodes.md describes the behaviour.
//
// Hysteresis keeps the choice from flapping: leaving an exit node that
// went away is immediate (it is offline in the map) or takes FailAfter
// missed pings in a row; coming back to a preferred one takes RecoverAfter
// answered pings in a row and at least MinDwell on the current one; auto
// moves to a faster node only when it is clearly faster.
package exitpick

import (
	"fmt"
	"slices"
	"time"

	"weft/internal/wire"
)

// Tuning. With the daemon's 2-second rounds, a failed exit node is left
// within FailAfter rounds (6 s) of its last pong, well inside the 15 s the
// seed's owner would tolerate, and a returning one is taken back after
// RecoverAfter rounds once MinDwell has passed since the last switch.
const (
	FailAfter    = 3
	RecoverAfter = 3
	MinDwell     = 10 * time.Second
	// AutoDwell is how long auto stays on a working exit node before it
	// considers a faster one.
	AutoDwell = 30 * time.Second
	// autoFaster: a candidate is clearly faster when its round trip is
	// below this share of the current one's and at least autoMargin
	// shorter.
	autoFaster = 0.7
	autoMargin = 10 * time.Millisecond
)

// Candidate is one exit node in one round.
type Candidate struct {
	ID   wire.NodeID
	Name string
	// Online is the map's word on the node.
	Online bool
	// Answered is whether it answered this round's ping, and RTT the
	// round trip when it did.
	Answered bool
	RTT      time.Duration
}

// Picker keeps the state across rounds. The zero value is ready for an
// ordered list; set Auto for auto. It is not safe for concurrent use.
type Picker struct {
	// Auto picks by latency; otherwise the candidates' order is the
	// preference.
	Auto bool

	cur   wire.NodeID
	since time.Time // when cur was chosen
	fails map[wire.NodeID]int
	oks   map[wire.NodeID]int
	rtt   map[wire.NodeID]time.Duration // smoothed
}

// Current is the exit node chosen last; zero for none.
func (p *Picker) Current() wire.NodeID { return p.cur }

// Observe takes one round and returns the exit node to use (zero: none of
// the candidates is usable and none was in use) and, when that differs
// from the previous round, why. When none is usable the last choice
// stays: traffic waits for it rather than leave without an exit node.
func (p *Picker) Observe(now time.Time, cands []Candidate) (wire.NodeID, string) {
	if p.fails == nil {
		p.fails, p.oks, p.rtt = map[wire.NodeID]int{}, map[wire.NodeID]int{}, map[wire.NodeID]time.Duration{}
	}
	byID := map[wire.NodeID]Candidate{}
	for _, c := range cands {
		byID[c.ID] = c
		p.count(c)
	}
	cur, hasCur := byID[p.cur]
	switch {
	case p.cur != 0 && (!hasCur || p.down(cur)):
		next := p.best(cands, func(c Candidate) bool { return c.ID != p.cur && p.usable(c) })
		if next.ID == 0 {
			return p.cur, ""
		}
		return p.switchTo(now, next, p.whyLeft(cur, hasCur))
	case p.cur == 0:
		next := p.best(cands, p.usable)
		if next.ID == 0 {
			return 0, ""
		}
		return p.switchTo(now, next, "first choice")
	}
	// The current one works: move only to a clearly better one.
	if p.Auto {
		if now.Sub(p.since) < AutoDwell {
			return p.cur, ""
		}
		next := p.best(cands, p.healthy)
		if next.ID != 0 && next.ID != p.cur && p.clearlyFaster(next.ID, p.cur) {
			return p.switchTo(now, next, fmt.Sprintf("%s answers faster (%v against %v for %s)",
				next.Name, p.rtt[next.ID].Round(time.Millisecond), p.rtt[p.cur].Round(time.Millisecond), cur.Name))
		}
		return p.cur, ""
	}
	if now.Sub(p.since) < MinDwell {
		return p.cur, ""
	}
	for _, c := range cands {
		if c.ID == p.cur {
			break
		}
		if p.healthy(c) {
			return p.switchTo(now, c, c.Name+" is back and comes first in the list")
		}
	}
	return p.cur, ""
}

func (p *Picker) count(c Candidate) {
	if c.Online && c.Answered {
		p.oks[c.ID]++
		p.fails[c.ID] = 0
		if old, ok := p.rtt[c.ID]; ok {
			p.rtt[c.ID] = (3*old + c.RTT) / 4
		} else {
			p.rtt[c.ID] = c.RTT
		}
		return
	}
	p.oks[c.ID] = 0
	p.fails[c.ID]++
}

// down: offline in the map, or FailAfter pings in a row unanswered.
func (p *Picker) down(c Candidate) bool { return !c.Online || p.fails[c.ID] >= FailAfter }

// usable: online and answering now; good enough to fail over to.
func (p *Picker) usable(c Candidate) bool { return c.Online && c.Answered }

// healthy: answering for RecoverAfter rounds; good enough to move back to.
func (p *Picker) healthy(c Candidate) bool { return c.Online && p.oks[c.ID] >= RecoverAfter }

// best is, among the candidates ok accepts, the first in order (a list)
// or the fastest (auto); zero if none.
func (p *Picker) best(cands []Candidate, ok func(Candidate) bool) Candidate {
	var out []Candidate
	for _, c := range cands {
		if ok(c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return Candidate{}
	}
	if p.Auto {
		slices.SortStableFunc(out, func(a, b Candidate) int { return int(p.rtt[a.ID] - p.rtt[b.ID]) })
	}
	return out[0]
}

func (p *Picker) clearlyFaster(a, b wire.NodeID) bool {
	ra, rb := p.rtt[a], p.rtt[b]
	return float64(ra) < autoFaster*float64(rb) && rb-ra >= autoMargin
}

func (p *Picker) whyLeft(c Candidate, known bool) string {
	switch {
	case !known:
		return "the exit node in use is no longer a candidate"
	case !c.Online:
		return c.Name + " went offline"
	}
	return fmt.Sprintf("%s stopped answering pings (%d missed)", c.Name, p.fails[c.ID])
}

func (p *Picker) switchTo(now time.Time, c Candidate, why string) (wire.NodeID, string) {
	p.cur, p.since = c.ID, now
	return c.ID, why
}

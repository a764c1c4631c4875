package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"weft/internal/controlclient"
	"weft/internal/exitpick"
	"weft/internal/localapi"
	"weft/internal/nodestate"
	"weft/internal/wire"
)

// ExitAuto is what `weft set --exit-node=auto` sends.
const ExitAuto = "auto"

// Failover timing: a round pings every candidate, each ping bounded by
// failoverPing, every failoverRound.
const (
	failoverRound = 2 * time.Second
	failoverPing  = 1500 * time.Millisecond
)

// splitExitChoice reads what the user gave --exit-node: "auto", a list
// "a,b" (two or more names), or one name (or "" for none).
func splitExitChoice(s string) (auto bool, list []string) {
	if s == ExitAuto {
		return true, nil
	}
	for n := range strings.SplitSeq(s, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(list, n) {
			list = append(list, n)
		}
	}
	return false, list
}

// applyExitEdit applies --exit-node=s to q. With nm nil (no map yet) a
// choice waits by name; checkExitAfterUp resolves it with the first map.
func applyExitEdit(q *nodestate.Prefs, s string, nm *controlclient.NetMap) error {
	q.ExitNodeList, q.ExitNodeAuto = nil, false
	auto, list := splitExitChoice(s)
	switch {
	case auto:
		q.ExitNodeAuto = true
		q.ExitNode, q.ExitNodeID = "", 0
		if nm == nil {
			return nil
		}
		// Until the first round of pings, the first online exit node:
		// internet traffic never leaves without one.
		for _, n := range nm.SortedPeers() {
			if n.OffersExit() && n.Online {
				q.ExitNode, q.ExitNodeID = n.Name, n.ID
				return nil
			}
		}
		return fmt.Errorf("%w: no approved exit node is online; see `weft exit-node list`", controlclient.ErrExitNodeOffline)
	case len(list) > 1:
		// In use at first: the first online one, else the first (and
		// traffic waits for it until the failover finds one).
		q.ExitNode, q.ExitNodeID = "", 0
		chosen := false
		for _, name := range list {
			c := nodestate.ExitCandidate{Name: name}
			if nm != nil {
				n, err := controlclient.ResolveExitNode(nm, name)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				c = nodestate.ExitCandidate{ID: n.ID, Name: n.Name}
				if !chosen && n.Online {
					q.ExitNode, q.ExitNodeID, chosen = n.Name, n.ID, true
				}
			}
			q.ExitNodeList = append(q.ExitNodeList, c)
		}
		if nm != nil && !chosen {
			q.ExitNode, q.ExitNodeID = q.ExitNodeList[0].Name, q.ExitNodeList[0].ID
		}
		return nil
	}
	q.ExitNode, q.ExitNodeID = s, 0
	if q.ExitNode != "" && nm != nil {
		n, err := checkExitNode(nm, q.ExitNode)
		if err != nil {
			return err
		}
		q.ExitNode, q.ExitNodeID = n.Name, n.ID
	}
	return nil
}

// failoverMode is a key for the user's multi-node choice in p: "" when
// the user chose one exit node or none.
func failoverMode(p nodestate.Prefs) string {
	if p.ExitNodeAuto {
		return ExitAuto
	}
	var b strings.Builder
	for _, c := range p.ExitNodeList {
		fmt.Fprintf(&b, "%d/%s,", c.ID, c.Name)
	}
	return b.String()
}

// exitCandidates are the nodes the picker chooses among: the list's, in
// order, or for auto every approved exit node in the map.
func exitCandidates(p nodestate.Prefs, nm *controlclient.NetMap) []exitpick.Candidate {
	var out []exitpick.Candidate
	add := func(n *wire.Node) {
		if n != nil && n.OffersExit() {
			out = append(out, exitpick.Candidate{ID: n.ID, Name: n.Name, Online: n.Online})
		}
	}
	if p.ExitNodeAuto {
		for _, n := range nm.SortedPeers() {
			add(n)
		}
		return out
	}
	for _, c := range p.ExitNodeList {
		if c.ID != 0 {
			add(nm.Peers[c.ID])
		} else if n, err := controlclient.ResolveExitNode(nm, c.Name); err == nil {
			add(n)
		}
	}
	return out
}

// RunExitFailover keeps the exit node in use in step with the user's list
// or auto choice until ctx ends: every failoverRound it pings each online
// candidate and asks the picker which to use; a switch is saved, put into
// effect, logged and recorded as a health event.
func (d *Daemon) RunExitFailover(ctx context.Context) {
	var pk *exitpick.Picker
	var mode string
	t := time.NewTicker(failoverRound)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		p, nm, eng := d.prefs, d.nm, d.engine
		d.mu.Unlock()
		m := failoverMode(p)
		if m == "" || nm == nil || eng == nil {
			pk = nil
			continue
		}
		if pk == nil || m != mode {
			pk, mode = &exitpick.Picker{Auto: p.ExitNodeAuto}, m
		}
		cands := exitCandidates(p, nm)
		d.pingCandidates(ctx, cands)
		id, why := pk.Observe(time.Now(), cands)
		if id != 0 && id != p.ExitNodeID {
			if err := d.switchExit(m, nm.Peers[id], why); err != nil {
				d.log.Error("exit node failover", "err", err)
			}
		}
	}
}

// pingCandidates fills in each online candidate's pong.
func (d *Daemon) pingCandidates(ctx context.Context, cands []exitpick.Candidate) {
	var wg sync.WaitGroup
	for i := range cands {
		if !cands[i].Online {
			continue
		}
		wg.Add(1)
		go func(c *exitpick.Candidate) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, failoverPing)
			defer cancel()
			if res, err := d.Ping(pctx, localapi.PingRequest{Peer: c.Name}); err == nil {
				c.Answered, c.RTT = true, time.Duration(res.RTTMS*float64(time.Millisecond))
			}
		}(&cands[i])
	}
	wg.Wait()
}

// switchExit makes n the exit node in use, unless the user changed the
// choice (mode) meanwhile.
func (d *Daemon) switchExit(mode string, n *wire.Node, why string) error {
	if n == nil {
		return errors.New("the chosen exit node left the map")
	}
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.mu.Lock()
	p := d.prefs
	d.mu.Unlock()
	if failoverMode(p) != mode {
		return nil
	}
	from := p.ExitNode
	if from == "" {
		from = "none"
	}
	p.ExitNode, p.ExitNodeID = n.Name, n.ID
	if err := d.setPrefs(p); err != nil {
		return err
	}
	text := fmt.Sprintf("exit node %s → %s: %s", from, n.Name, why)
	d.log.Info("exit node switched", "from", from, "to", n.Name, "why", why)
	d.event(localapi.HealthEvent{Time: time.Now(), Kind: localapi.EventExit, Peer: n.Name, Text: text})
	return nil
}

// event hands ev to the configured health history, if any.
func (d *Daemon) event(ev localapi.HealthEvent) {
	if d.cfg.OnHealthEvent != nil {
		d.cfg.OnHealthEvent(ev)
	}
}

// exitInUse is the name of the exit node p's traffic goes through in nm:
// chosen, present and online; "" when none.
func exitInUse(p nodestate.Prefs, nm *controlclient.NetMap) string {
	if nm == nil || (p.ExitNodeID == 0 && p.ExitNode == "") {
		return ""
	}
	n, err := resolveExit(nm, p.ExitNodeID, p.ExitNode)
	if err != nil || !n.Online {
		return ""
	}
	return n.Name
}

// publicExitList is the failover list as the user reads it.
func publicExitList(p nodestate.Prefs) []string {
	var out []string
	for _, c := range p.ExitNodeList {
		out = append(out, c.Name)
	}
	return out
}

package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"weft/internal/changefeed"
	"weft/internal/policy"
	"weft/internal/store"
	"weft/internal/wire"
)

// loadPolicy returns the policy in force in st, or nil for none. A stored
// policy that does not parse stops the server rather than letting
// everything through.
func loadPolicy(ctx context.Context, st store.Store) (*policy.Policy, error) {
	pv, err := st.GetPolicy(ctx, 0)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("control: loading the policy: %w", err)
	}
	p, err := policy.Parse(pv.Body)
	if err != nil {
		return nil, fmt.Errorf("control: policy version %d in the store does not parse (%w); a weft build that wrote it must run, or remove that row", pv.Version, err)
	}
	return withUserGroups(ctx, st, p)
}

// withUserGroups gives p the group members the identity provider gives:
// the users' groups as of their last sign-in (see policy.WithGroups).
func withUserGroups(ctx context.Context, st store.Store, p *policy.Policy) (*policy.Policy, error) {
	if p == nil {
		return nil, nil
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("control: loading users' groups for the policy: %w", err)
	}
	groups := map[string][]string{}
	for _, u := range users {
		if len(u.Groups) > 0 {
			groups[u.Name] = u.Groups
		}
	}
	return p.WithGroups(groups), nil
}

// UserGroupsChanged puts the stored policy in force again with the
// users' groups as they are now: someone signed in with the identity
// provider, whose groups may have changed.
func (s *Server) UserGroupsChanged() {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	p, err := loadPolicy(ctx, s.cfg.Store)
	if err != nil {
		s.log.Error("reloading the policy after a sign-in", "err", err)
		return
	}
	s.PolicyChanged(p)
}

// PolicyChanged puts a new policy in force (adminapi.PolicyNotifier):
// routes it auto-approves are approved, every node's filter and peer list
// are recompiled, and only the nodes whose filter or peers changed get a
// delta.
func (s *Server) PolicyChanged(p *policy.Policy) {
	if pg, err := withUserGroups(s.ctx, s.cfg.Store, p); err != nil {
		s.log.Error("policy: the users' provider groups are left out", "err", err)
	} else {
		p = pg
	}
	s.m.setPolicy(p)
	s.out.tailnetChanged(changefeed.KindPolicy)
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	nodes, err := s.cfg.Store.ListNodes(ctx)
	if err != nil {
		s.log.Error("auto-approving routes after a policy change", "err", err)
		return
	}
	for i := range nodes {
		s.autoApprove(ctx, p, &nodes[i])
	}
}

// autoApprove approves the routes n advertises that the policy's
// autoApprovers allow and no one approved yet, and reports whether it
// approved any. The node's new record reaches the mapper.
func (s *Server) autoApprove(ctx context.Context, p *policy.Policy, n *store.Node) bool {
	if p == nil {
		return false
	}
	w := n.Wire()
	changed := false
	for _, r := range n.AdvertisedRoutes {
		if slices.Contains(n.ApprovedRoutes, r) {
			continue
		}
		rule, ok := p.AutoApprove(&w, r)
		if !ok {
			continue
		}
		updated, err := s.cfg.Store.AutoApproveRoute(ctx, n.ID, r, rule)
		if err != nil {
			s.log.Error("auto-approving a route", "node", n.Name, "route", r, "err", err)
			continue
		}
		s.log.Info("route auto-approved", "node", n.Name, "route", r, "rule", rule)
		*n, changed = updated, true
	}
	if changed {
		s.m.upsert(n)
		s.out.nodes(changefeed.KindNode, n.ID)
	}
	return changed
}

// policyFacts is what of a node the compiled policy depends on; a change
// in anything else (endpoints, online...) needs no recompilation.
func policyFacts(n *wire.Node) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s|%s|%v|%v|%v", n.Name, n.User, n.Tags, n.Addresses, n.Routes)
	return b.String()
}

// currentPolicy returns the policy in force, nil for none.
func (m *mapper) currentPolicy() *policy.Policy {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.policy
}

// setPolicy swaps the policy; the next flush recompiles everything.
func (m *mapper) setPolicy(p *policy.Policy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.policy = p
	m.policyChanged = true
	m.scheduleLocked()
}

// noteFactsLocked marks id for recompilation when its policy facts moved
// from old to new. m.mu is held.
func (m *mapper) noteFactsLocked(id wire.NodeID, old, new *wire.Node) {
	if old == nil || policyFacts(old) != policyFacts(new) {
		m.recompile[id] = struct{}{}
	}
}

// viewChange is what one receiver must be told after a recompilation:
// peers that came into or left its view, and its new filter.
type viewChange struct {
	add    []*nodeEntry
	remove []wire.NodeID
	filter []byte // JSON of the new filter, or nil if unchanged
}

// recompileLocked compiles the policy for the current nodes if anything it
// depends on changed, and returns, per receiver, what changed for it.
// Visibility between two nodes depends only on those two and the policy,
// so after node changes only the pairs holding a changed node are
// compared; after a policy change, every pair. m.mu is held.
func (m *mapper) recompileLocked() map[wire.NodeID]*viewChange {
	if !m.policyChanged && len(m.recompile) == 0 {
		return nil
	}
	old := m.compiled
	nodes := make([]*wire.Node, 0, len(m.nodes))
	for _, e := range m.nodes {
		nodes = append(nodes, &e.n)
	}
	m.compiled = m.policy.Compile(nodes)
	out := viewChanges{}
	switch {
	case m.s.cfg.Visible != nil:
		// A test's hook decides who sees whom; it does not change.
	case m.policyChanged:
		m.policyViewChangesLocked(old, out)
	default:
		m.nodeViewChangesLocked(old, out)
	}
	for rid, r := range m.nodes {
		if r.sess == nil || r.revoked {
			continue
		}
		if f := m.compiled.Filter(rid); !f.Equal(r.filterSent) {
			r.filterSent = f
			out.get(rid).filter = mustJSON(f)
		}
	}
	m.policyChanged = false
	clear(m.recompile)
	return out
}

// viewChanges is what changed for each receiver in one recompile.
type viewChanges map[wire.NodeID]*viewChange

// get returns id's change, made empty on first use.
func (v viewChanges) get(id wire.NodeID) *viewChange {
	vc := v[id]
	if vc == nil {
		vc = &viewChange{}
		v[id] = vc
	}
	return vc
}

// policyViewChangesLocked adds to out every view the new policy changes,
// compared by class of nodes (policy.ViewChanges). m.mu is held.
func (m *mapper) policyViewChangesLocked(old *policy.Compiled, out viewChanges) {
	ids := make([]wire.NodeID, 0, len(m.nodes))
	for id := range m.nodes {
		ids = append(ids, id)
	}
	policy.ViewChanges(old, m.compiled, ids, func(a, b wire.NodeID, visible bool) {
		ea, eb := m.nodes[a], m.nodes[b]
		for _, p := range [2][2]*nodeEntry{{ea, eb}, {eb, ea}} {
			r, x := p[0], p[1]
			if r.sess == nil || x.revoked {
				continue
			}
			if visible {
				out.get(r.n.ID).add = append(out.get(r.n.ID).add, x)
			} else {
				out.get(r.n.ID).remove = append(out.get(r.n.ID).remove, x.n.ID)
			}
		}
	})
}

// nodeViewChangesLocked adds to out the views that changed because the
// nodes in m.recompile changed: only pairs holding one of them are
// compared. m.mu is held.
func (m *mapper) nodeViewChangesLocked(old *policy.Compiled, out viewChanges) {
	// note records that r's view of x changed (r has a live stream).
	note := func(r, x wire.NodeID, xe *nodeEntry) {
		was, is := old.CanSee(r, x), m.compiled.CanSee(r, x)
		switch {
		case was == is, xe.revoked:
			// A revoked node is in no map; expiry.go adds it back.
		case is:
			out.get(r).add = append(out.get(r).add, xe)
		default:
			out.get(r).remove = append(out.get(r).remove, x)
		}
	}
	for xid := range m.recompile {
		xe := m.nodes[xid]
		if xe == nil {
			continue // removed: peers_removed tells everyone
		}
		for rid, r := range m.nodes {
			if rid == xid {
				continue
			}
			if r.sess != nil {
				note(rid, xid, xe)
			}
			if xe.sess != nil {
				note(xid, rid, r)
			}
		}
	}
}

// filterForLocked returns the JSON of id's current filter and remembers
// it as sent. m.mu is held.
func (m *mapper) filterForLocked(id wire.NodeID, e *nodeEntry) []byte {
	e.filterSent = m.compiled.Filter(id)
	return mustJSON(e.filterSent)
}

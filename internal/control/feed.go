package control

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"weft/internal/changefeed"
	"weft/internal/store"
	"weft/internal/wire"
)

// Several servers, one tailnet. Every path that changes the store
// (registration, route changes, runtime facts, administrators' changes,
// ephemeral expiry) and every stream that starts or ends puts an event in
// the server's outbox; one goroutine publishes it on the change feed
// (changefeed.Feed). Every server applies the other servers' events by
// re-reading the rows they name and sending its own streams the deltas, as
// it would for a change of its own (docs/changefeed.md, docs/ha.md).

// outbox gathers the events not yet published, coalesced: a node changed
// ten times before the publisher ran is named once.
type outbox struct {
	feed changefeed.Feed
	wake chan struct{} // signalled when something was added

	mu      sync.Mutex // guards the fields below
	ids     map[changefeed.Kind]map[wire.NodeID]struct{}
	online  map[wire.NodeID]bool // last stream state of each node
	tailnet map[changefeed.Kind]bool
	gone    map[string]bool // servers claimed dead (liveness.go)
}

func newOutbox(f changefeed.Feed) *outbox {
	return &outbox{feed: f, wake: make(chan struct{}, 1),
		ids: map[changefeed.Kind]map[wire.NodeID]struct{}{}, online: map[wire.NodeID]bool{},
		tailnet: map[changefeed.Kind]bool{}, gone: map[string]bool{}}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// nodes queues an event of kind (node, runtime or removed) for ids.
func (o *outbox) nodes(kind changefeed.Kind, ids ...wire.NodeID) {
	if len(ids) == 0 {
		return
	}
	o.mu.Lock()
	set := o.ids[kind]
	if set == nil {
		set = map[wire.NodeID]struct{}{}
		o.ids[kind] = set
	}
	for _, id := range ids {
		set[id] = struct{}{}
	}
	o.mu.Unlock()
	o.signal()
}

// setOnline queues that id's stream here started (on) or ended.
func (o *outbox) setOnline(id wire.NodeID, on bool) {
	o.mu.Lock()
	o.online[id] = on
	o.mu.Unlock()
	o.signal()
}

// serverGone queues that the server origin died and this one claimed it.
func (o *outbox) serverGone(origin string) {
	o.mu.Lock()
	o.gone[origin] = true
	o.mu.Unlock()
	o.signal()
}

// tailnetChanged queues an event of a kind without nodes (policy, dns).
func (o *outbox) tailnetChanged(kind changefeed.Kind) {
	o.mu.Lock()
	o.tailnet[kind] = true
	o.mu.Unlock()
	o.signal()
}

// take empties the outbox into the events to publish, in an order that
// lets a receiver apply each as it comes.
func (o *outbox) take() []changefeed.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	origin := o.feed.Origin()
	var evs []changefeed.Event
	for _, k := range []changefeed.Kind{changefeed.KindRemoved, changefeed.KindNode, changefeed.KindRuntime} {
		ids := slices.Sorted(maps.Keys(o.ids[k]))
		evs = append(evs, changefeed.Split(origin, k, ids)...)
	}
	var on, off []wire.NodeID
	for id, v := range o.online {
		if v {
			on = append(on, id)
		} else {
			off = append(off, id)
		}
	}
	slices.Sort(on)
	slices.Sort(off)
	evs = append(evs, changefeed.Split(origin, changefeed.KindOffline, off)...)
	evs = append(evs, changefeed.Split(origin, changefeed.KindOnline, on)...)
	for _, dead := range slices.Sorted(maps.Keys(o.gone)) {
		evs = append(evs, changefeed.Event{Version: changefeed.Version, Origin: origin, Kind: changefeed.KindGone, Server: dead})
	}
	for _, k := range []changefeed.Kind{changefeed.KindPolicy, changefeed.KindDNS, changefeed.KindLogin, changefeed.KindHello} {
		if o.tailnet[k] {
			evs = append(evs, changefeed.Split(origin, k, nil)...)
		}
	}
	clear(o.ids)
	clear(o.online)
	clear(o.tailnet)
	clear(o.gone)
	return evs
}

// putBack returns events that failed to publish to the outbox; what was
// queued since is newer and wins.
func (o *outbox) putBack(evs []changefeed.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ev := range evs {
		switch ev.Kind {
		case changefeed.KindOnline, changefeed.KindOffline:
			for _, id := range ev.Nodes {
				if _, newer := o.online[id]; !newer {
					o.online[id] = ev.Kind == changefeed.KindOnline
				}
			}
		case changefeed.KindPolicy, changefeed.KindDNS, changefeed.KindLogin, changefeed.KindHello:
			o.tailnet[ev.Kind] = true
		case changefeed.KindGone:
			o.gone[ev.Server] = true
		default:
			set := o.ids[ev.Kind]
			if set == nil {
				set = map[wire.NodeID]struct{}{}
				o.ids[ev.Kind] = set
			}
			for _, id := range ev.Nodes {
				set[id] = struct{}{}
			}
		}
	}
}

// run publishes what the outbox gathers until ctx ends. While the feed
// fails (the database is down) the events wait and are retried with a
// growing pause; the other servers resync anyway when their own
// connection comes back.
func (o *outbox) run(ctx context.Context, log *slog.Logger) {
	const firstPause = 100 * time.Millisecond
	pause := firstPause
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		}
		evs := o.take()
		failed := -1
		for i, ev := range evs {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := o.feed.Publish(pctx, ev)
			cancel()
			if err != nil {
				log.Warn("change event not published; retrying", "kind", ev.Kind, "err", err, "in", pause)
				failed = i
				break
			}
		}
		if failed < 0 {
			pause = firstPause
			continue
		}
		o.putBack(evs[failed:])
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
		o.signal()
	}
}

// feedStats counts what sharing the tailnet with other servers costs this
// one: applying their events, and writing the runtime facts they read.
// A benchmark logs it to tell a change feed backlog from other waits.
type feedStats struct {
	batches, events atomic.Int64 // calls of applyEvents, events in them
	reread          atomic.Int64 // nodes re-read (in batches)
	busy            atomic.Int64 // nanoseconds spent applying
	maxBatch        atomic.Int64 // most events in one call

	persisted   atomic.Int64 // nodes' runtime facts written
	persistBusy atomic.Int64 // nanoseconds spent writing them
	persistMax  atomic.Int64 // longest round of writes, in nanoseconds
}

func (f *feedStats) note(events int, took time.Duration) {
	f.batches.Add(1)
	f.events.Add(int64(events))
	f.busy.Add(int64(took))
	storeMax(&f.maxBatch, int64(events))
}

// notePersist counts a round of runtime writes.
func (f *feedStats) notePersist(nodes int, took time.Duration) {
	f.persisted.Add(int64(nodes))
	f.persistBusy.Add(int64(took))
	storeMax(&f.persistMax, int64(took))
}

// storeMax raises v to x if x is larger.
func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// String sums the counts up for a log line.
func (f *feedStats) String() string {
	ms := func(ns int64) time.Duration { return time.Duration(ns).Round(time.Millisecond) }
	return fmt.Sprintf("applied %d events in %d batches (at most %d in one), %d nodes re-read, %v applying; "+
		"wrote %d nodes' runtime facts in %v (longest round %v)",
		f.events.Load(), f.batches.Load(), f.maxBatch.Load(), f.reread.Load(), ms(f.busy.Load()),
		f.persisted.Load(), ms(f.persistBusy.Load()), ms(f.persistMax.Load()))
}

// removedReason is what a node's stream is closed with when another
// server deleted the node.
const removedReason = "this node was deleted; run `weft up` with a pre-auth key to join again"

// applyEvents applies a batch of other servers' events: everything the
// feed received while the previous batch was being applied. It ends as
// applying them one by one in order would, with far fewer store reads: a
// burst of node and runtime events (10,000 nodes connecting to another
// server) costs one Store.GetNodes and one fan-out round, not one read and
// one round per node. A resync splits the batch: what came before it is
// applied first.
func (s *Server) applyEvents(evs []changefeed.Event) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	start := time.Now()
	b := newFeedBatch()
	for _, ev := range evs {
		if ev.Kind == changefeed.KindResync {
			s.applyBatch(ctx, b)
			b = newFeedBatch()
			s.resync(ctx)
			continue
		}
		b.add(ev)
	}
	s.applyBatch(ctx, b)
	s.feedStats.note(len(evs), time.Since(start))
}

// feedBatch is a batch of events sorted by what applying them takes.
type feedBatch struct {
	reread  map[wire.NodeID]struct{} // named by node and runtime events
	removed map[wire.NodeID]struct{} // named by removed events
	// ops are the removed, online, offline and gone events in the order
	// they came: a node's online state depends on it.
	ops     []changefeed.Event
	tailnet map[changefeed.Kind]bool // policy, dns, login, hello
}

func newFeedBatch() *feedBatch {
	return &feedBatch{reread: map[wire.NodeID]struct{}{}, removed: map[wire.NodeID]struct{}{},
		tailnet: map[changefeed.Kind]bool{}}
}

func (b *feedBatch) add(ev changefeed.Event) {
	switch ev.Kind {
	case changefeed.KindNode, changefeed.KindRuntime:
		for _, id := range ev.Nodes {
			b.reread[id] = struct{}{}
		}
	case changefeed.KindRemoved:
		for _, id := range ev.Nodes {
			b.removed[id] = struct{}{}
		}
		b.ops = append(b.ops, ev)
	case changefeed.KindOnline, changefeed.KindOffline, changefeed.KindGone:
		b.ops = append(b.ops, ev)
	default:
		b.tailnet[ev.Kind] = true
	}
}

// applyBatch applies b: first the re-read nodes, so that a node
// registered and announced online in one batch exists when its online
// state is set; then the removals and stream changes in order; then the
// tailnet-wide changes. Re-reading reads the store as it is now, so where
// in the batch a node was named does not matter, and a node removed in
// the batch is not re-read (IDs are never reused: a removal is final).
func (s *Server) applyBatch(ctx context.Context, b *feedBatch) {
	var ids []wire.NodeID
	for id := range b.reread {
		if _, gone := b.removed[id]; !gone {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		s.reloadNodes(ctx, ids)
		s.feedStats.reread.Add(int64(len(ids)))
	}
	for _, ev := range b.ops {
		switch ev.Kind {
		case changefeed.KindRemoved:
			for _, id := range ev.Nodes {
				s.m.remove(id, removedReason)
			}
		case changefeed.KindOnline, changefeed.KindOffline:
			for _, id := range ev.Nodes {
				s.m.remoteOnline(id, ev.Origin, ev.Kind == changefeed.KindOnline)
			}
		case changefeed.KindGone:
			s.applyGone(ev)
		}
	}
	if b.tailnet[changefeed.KindPolicy] {
		p, err := loadPolicy(ctx, s.cfg.Store)
		if err != nil {
			s.log.Error("reloading the policy another server put in force", "err", err)
		} else {
			s.m.setPolicy(p)
		}
	}
	if b.tailnet[changefeed.KindDNS] {
		s.reloadDNS(ctx)
	}
	if b.tailnet[changefeed.KindLogin] {
		s.loginsChanged()
	}
	if b.tailnet[changefeed.KindHello] {
		for _, id := range s.m.streaming() {
			s.out.setOnline(id, true)
		}
	}
}

// applyGone applies another server's word that the server ev.Server died.
func (s *Server) applyGone(ev changefeed.Event) {
	if ev.Server == s.cfg.Feed.Origin() {
		// Taken for dead while alive (cut from the store for the
		// server timeout): the others just marked this server's nodes
		// offline, and hear this after that.
		s.log.Warn("liveness: the other servers took this server for dead; announcing its streams again", "by", ev.Origin)
		for _, id := range s.m.streaming() {
			s.out.setOnline(id, true)
		}
		return
	}
	s.serverGone(ev.Server)
}

// reloadNodes re-reads the nodes ids in one store call and applies them
// at once, so that they go out in one fan-out round: changed, or removed
// when the store no longer has them. On a failed read they stay as they
// are until their next change or a resync.
func (s *Server) reloadNodes(ctx context.Context, ids []wire.NodeID) {
	nodes, err := s.cfg.Store.GetNodes(ctx, ids)
	if err != nil {
		s.log.Error("reloading the nodes another server changed", "nodes", len(ids), "err", err)
		return
	}
	s.m.refreshAll(ids, nodes)
}

// resync re-reads everything another server may have changed while this
// one missed the events, and tells the others which nodes stream here.
func (s *Server) resync(ctx context.Context) {
	all, err := s.cfg.Store.ListNodes(ctx)
	if err != nil {
		s.log.Error("resync after the change feed came back: loading nodes", "err", err)
		return
	}
	seen := make(map[wire.NodeID]bool, len(all))
	for i := range all {
		seen[all[i].ID] = true
	}
	s.m.refreshAll(nil, all)
	for _, id := range s.m.ids() {
		if !seen[id] {
			s.m.remove(id, removedReason)
		}
	}
	if p, err := loadPolicy(ctx, s.cfg.Store); err != nil {
		s.log.Error("resync: loading the policy", "err", err)
	} else {
		s.m.setPolicy(p)
	}
	s.reloadDNS(ctx)
	s.loginsChanged()
	// Which nodes stream where is in no table: this server says which
	// stream here, and asks the others to say theirs.
	for _, id := range s.m.streaming() {
		s.out.setOnline(id, true)
	}
	s.out.tailnetChanged(changefeed.KindHello)
	s.log.Info("resynced with the store", "nodes", len(all))
}

// loginsChanged tells the waiting interactive logins to read their rows.
func (s *Server) loginsChanged() {
	if s.cfg.LoginsChanged != nil {
		s.cfg.LoginsChanged()
	}
}

// ids lists every node the mapper holds.
func (m *mapper) ids() []wire.NodeID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Keys(m.nodes))
}

// streaming lists the nodes with a stream on this server.
func (m *mapper) streaming() []wire.NodeID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.NodeID
	for id, e := range m.nodes {
		if e.sess != nil {
			out = append(out, id)
		}
	}
	return out
}

// refreshAll applies the stored records of the nodes ids that another
// server changed, as read in one call (nodes; an id the store no longer
// has is missing there, and is removed). It holds m.mu throughout, so
// every change lands in the same batch window and goes out in one flush.
func (m *mapper) refreshAll(ids []wire.NodeID, nodes []store.Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	found := make(map[wire.NodeID]bool, len(nodes))
	for i := range nodes {
		found[nodes[i].ID] = true
		m.refreshLocked(&nodes[i])
	}
	for _, id := range ids {
		if !found[id] {
			m.removeLocked(id, "this node was deleted by an administrator; run `weft up` with a pre-auth key to join again")
		}
	}
}

// refreshLocked applies a node's stored record after another server
// changed it: nothing when nothing differs, a patch when only runtime
// facts do (taken from the store unless the node streams here, whose are
// newer), the whole record otherwise. m.mu is held.
func (m *mapper) refreshLocked(n *store.Node) {
	e := m.nodes[n.ID]
	w := n.Wire()
	if e == nil || !sameRecord(&e.n, &w) || e.ephemeral != n.Ephemeral {
		m.upsertLocked(n)
		return
	}
	if e.sess != nil {
		return
	}
	var c change
	if !slices.Equal(e.n.Endpoints, w.Endpoints) || e.n.HomeRegion != w.HomeRegion || e.n.DiscoKey != w.DiscoKey {
		m.indexDiscoLocked(n.ID, e.n.DiscoKey, w.DiscoKey)
		e.n.Endpoints, e.n.HomeRegion, e.n.DiscoKey = w.Endpoints, w.HomeRegion, w.DiscoKey
		c |= chRuntime
	}
	if !reflect.DeepEqual(e.n.Hostinfo, w.Hostinfo) {
		e.n.Hostinfo = w.Hostinfo
		c |= chHostinfo
	}
	if c != 0 {
		e.enc = nil
		m.markLocked(n.ID, c)
	}
}

// remoteOnline records that node id's stream started (on) or ended at the
// server origin. A node streams from one server at a time, so the latest
// server to say it started holds it; an end reported by any other is old
// news.
func (m *mapper) remoteOnline(id wire.NodeID, origin string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.nodes[id]
	if e == nil || m.closed {
		return
	}
	switch {
	case on:
		e.remoteAt = origin
	case e.remoteAt == origin:
		e.remoteAt = ""
	default:
		return
	}
	m.setOnlineLocked(id, e)
}

// setOnlineLocked brings e's online flag in line with its streams here
// and elsewhere, and arms or stops an ephemeral node's deletion. m.mu is
// held.
func (m *mapper) setOnlineLocked(id wire.NodeID, e *nodeEntry) {
	on := e.online()
	if on != e.n.Online {
		e.n.Online = on
		if !on {
			e.n.LastSeen = m.s.cfg.Now().UTC()
		}
		e.enc = nil
		m.markLocked(id, chOnline)
	}
	switch {
	case on && e.gone != nil:
		e.gone.Stop()
		e.gone = nil
	case !on && e.ephemeral:
		m.scheduleGoneLocked(id, e)
	}
}

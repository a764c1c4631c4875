package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"weft/internal/changefeed"
	"weft/internal/key"
	"weft/internal/policy"
	"weft/internal/store"
	"weft/internal/wire"
)

// change says what about a node must be sent to the nodes that see it.
type change uint8

const (
	chFull     change = 1 << iota // the record changed: send it whole
	chOnline                      // online and last seen: a patch
	chRuntime                     // endpoints, home region, disco key: a patch
	chHostinfo                    // host facts: a patch of their own
)

// nodeEntry is the server's in-memory view of one node.
type nodeEntry struct {
	n          wire.Node // Online is true while sess is set
	ephemeral  bool
	enc        []byte             // cached JSON of n; nil when stale
	sess       *session           // live map stream, or nil
	gone       *time.Timer        // deletes an ephemeral node that stays away
	expiry     *time.Timer        // revokes the node when its key expires (expiry.go)
	revoked    bool               // its key expired: in no map, no stream (expiry.go)
	filterSent *wire.PacketFilter // the packet filter last sent to the node
	// remoteAt is the change-feed origin of the server that last said
	// the node's stream started there; "" when none (feed.go).
	remoteAt string
}

// online reports whether the node streams here or at another server.
func (e *nodeEntry) online() bool { return e.sess != nil || e.remoteAt != "" }

// encoded returns n's JSON, computing it once per change: a full map for
// one node and a delta for thousands reuse the same bytes.
func (e *nodeEntry) encoded() []byte {
	if e.enc == nil {
		e.enc = mustJSON(&e.n)
	}
	return e.enc
}

// mapper keeps every node's current record and each live stream, gathers
// changes for one batch window, and then computes each change once and
// hands the resulting frames to the streams that see it. Its cost per
// change is proportional to the number of streams, never to the square.
type mapper struct {
	s *Server

	mu       sync.Mutex // guards everything below
	nodes    map[wire.NodeID]*nodeEntry
	dirty    map[wire.NodeID]change
	persist  map[wire.NodeID]struct{} // runtime facts not yet in the store
	removed  []wire.NodeID
	disco    map[key.DiscoPublic]wire.NodeID // who holds each disco key (disco.go)
	nodeKeys map[key.NodePublic]wire.NodeID  // whose each node key is (relayauth.go)
	seq      uint64
	flushing bool // a flush is scheduled
	closed   bool
	relay    []byte // JSON of the relay map
	dns      []byte // JSON of the tailnet's DNS configuration

	policy        *policy.Policy           // in force; nil: everything allowed
	compiled      *policy.Compiled         // policy for the nodes as last compiled
	policyChanged bool                     // policy replaced since the last compilation
	recompile     map[wire.NodeID]struct{} // nodes whose policy facts changed since then
}

func newMapper(ctx context.Context, s *Server) (*mapper, error) {
	all, err := s.cfg.Store.ListNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("control: loading nodes: %w", err)
	}
	pol, err := loadPolicy(ctx, s.cfg.Store)
	if err != nil {
		return nil, err
	}
	m := &mapper{
		s:         s,
		nodes:     make(map[wire.NodeID]*nodeEntry, len(all)),
		dirty:     map[wire.NodeID]change{},
		persist:   map[wire.NodeID]struct{}{},
		disco:     map[key.DiscoPublic]wire.NodeID{},
		nodeKeys:  map[key.NodePublic]wire.NodeID{},
		relay:     mustJSON(s.cfg.RelayMap),
		policy:    pol,
		recompile: map[wire.NodeID]struct{}{},
	}
	dns, err := loadDNS(ctx, s)
	if err != nil {
		return nil, err
	}
	m.dns = mustJSON(dns)
	m.mu.Lock()
	wn := make([]*wire.Node, 0, len(all))
	for i := range all {
		e := &nodeEntry{n: all[i].Wire(), ephemeral: all[i].Ephemeral}
		m.nodes[all[i].ID] = e
		wn = append(wn, &e.n)
		m.indexDiscoLocked(all[i].ID, key.DiscoPublic{}, e.n.DiscoKey)
		m.indexNodeKeyLocked(all[i].ID, key.NodePublic{}, e.n.NodeKey)
		m.armExpiryLocked(all[i].ID, e)
	}
	m.compiled = pol.Compile(wn)
	// Nodes that expired while the server was down are simply left out;
	// nobody has a stream yet to be told.
	m.removed = nil
	clear(m.recompile)
	m.mu.Unlock()
	// Ephemeral nodes that were offline when the server stopped get their
	// full timeout again from now.
	for id, e := range m.nodes {
		if e.ephemeral {
			m.scheduleGoneLocked(id, e)
		}
	}
	return m, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("control: encoding JSON: " + err.Error())
	}
	return b
}

// markLocked records a change and schedules a flush. m.mu is held.
func (m *mapper) markLocked(id wire.NodeID, c change) {
	m.dirty[id] |= c
	m.scheduleLocked()
}

func (m *mapper) scheduleLocked() {
	if m.flushing || m.closed {
		return
	}
	m.flushing = true
	time.AfterFunc(m.s.cfg.BatchWindow, m.flush)
}

// upsert takes a node's stored record after a registration or an
// administrator's change.
func (m *mapper) upsert(n *store.Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upsertLocked(n)
}

// upsertLocked is upsert with m.mu held.
func (m *mapper) upsertLocked(n *store.Node) {
	e := m.nodes[n.ID]
	w := n.Wire()
	var old *wire.Node
	if e == nil {
		e = &nodeEntry{}
		m.nodes[n.ID] = e
	} else {
		o := e.n
		old = &o
	}
	m.noteFactsLocked(n.ID, old, &w)
	w.Online = e.online()
	if e.sess != nil {
		// A live stream's runtime facts are newer than the store's,
		// which are written behind.
		w.Endpoints, w.HomeRegion, w.DiscoKey, w.LastSeen = e.n.Endpoints, e.n.HomeRegion, e.n.DiscoKey, e.n.LastSeen
		if e.n.Hostinfo != nil {
			w.Hostinfo = e.n.Hostinfo
		}
	}
	m.indexDiscoLocked(n.ID, e.n.DiscoKey, w.DiscoKey)
	m.indexNodeKeyLocked(n.ID, e.n.NodeKey, w.NodeKey)
	e.n, e.enc, e.ephemeral = w, nil, n.Ephemeral
	m.markLocked(n.ID, chFull)
	m.armExpiryLocked(n.ID, e)
}

// wireNode returns a copy of a node's current record, or nil.
func (m *mapper) wireNode(id wire.NodeID) *wire.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.nodes[id]
	if e == nil {
		return nil
	}
	n := e.n
	return &n
}

// connected makes sess the node's stream, replacing any older one, and
// queues its full map. It refuses a disco key another node holds (the
// caller sends the refusal).
func (m *mapper) connected(n *store.Node, sess *session) *wire.ErrorMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		sess.close()
		return nil
	}
	if m.discoHolderLocked(n.DiscoKey, n.ID) != 0 {
		return errDiscoTaken
	}
	e := m.nodes[n.ID]
	var prev *wire.Node
	if e == nil {
		e = &nodeEntry{}
		m.nodes[n.ID] = e
	} else {
		o := e.n
		prev = &o
	}
	if e.sess != nil {
		// One stream per node: the newer one wins. The old one is
		// closed on a goroutine of its own so that a connection slow
		// to close does not hold m.mu.
		m.s.spawn(e.sess.close)
	}
	if e.gone != nil {
		e.gone.Stop()
		e.gone = nil
	}
	old := e.n
	w := n.Wire()
	w.Online = true
	m.noteFactsLocked(n.ID, prev, &w)
	e.filterSent = nil // the full map carries the filter
	c := chOnline | chRuntime
	if !sameRecord(&old, &w) {
		c |= chFull
	}
	if !reflect.DeepEqual(old.Hostinfo, w.Hostinfo) {
		c |= chHostinfo
	}
	m.indexDiscoLocked(n.ID, e.n.DiscoKey, w.DiscoKey)
	m.indexNodeKeyLocked(n.ID, e.n.NodeKey, w.NodeKey)
	e.n, e.enc, e.sess, e.ephemeral = w, nil, sess, n.Ephemeral
	// A node streams from one server at a time: whatever another said
	// before is past.
	e.remoteAt = ""
	m.markLocked(n.ID, c)
	m.persist[n.ID] = struct{}{}
	m.s.out.setOnline(n.ID, true)
	// The full map is only marked here and built by the stream's writer
	// when it gets to it: a reconnect storm then holds a few full maps in
	// memory at a time, not one per node.
	sess.fullSeq = m.seq
	sess.enqueue(nil)
	m.armExpiryLocked(n.ID, e)
	if e.revoked {
		// The key expired between the stream's checks and now.
		sess.fail(expiredError(e.n.KeyExpiry))
	}
	return nil
}

// sameRecord reports whether two records differ only in what patches
// carry (online, last seen, endpoints, home region, disco key).
func sameRecord(a, b *wire.Node) bool {
	x, y := *a, *b
	for _, n := range []*wire.Node{&x, &y} {
		n.Online, n.LastSeen, n.Endpoints, n.HomeRegion, n.DiscoKey = false, time.Time{}, nil, 0, wire.Node{}.DiscoKey
		n.Hostinfo = nil
	}
	return reflect.DeepEqual(x, y)
}

// disconnected ends sess. If it is still the node's current stream the
// node goes offline, and an ephemeral node is deleted later unless it
// comes back.
func (m *mapper) disconnected(sess *session) {
	sess.close()
	m.mu.Lock()
	e := m.nodes[sess.id]
	if e == nil || e.sess != sess {
		m.mu.Unlock()
		return
	}
	e.sess = nil
	m.setOnlineLocked(sess.id, e)
	m.persist[sess.id] = struct{}{}
	m.s.out.setOnline(sess.id, false)
	m.mu.Unlock()
}

// scheduleGoneLocked arms the deletion of an offline ephemeral node.
func (m *mapper) scheduleGoneLocked(id wire.NodeID, e *nodeEntry) {
	if m.closed || e.sess != nil || e.gone != nil {
		return
	}
	e.gone = time.AfterFunc(m.s.cfg.EphemeralTimeout, func() { m.expireEphemeral(id) })
}

func (m *mapper) expireEphemeral(id wire.NodeID) {
	m.mu.Lock()
	e := m.nodes[id]
	stillAway := e != nil && !e.online() && !m.closed
	if e != nil {
		e.gone = nil
	}
	m.mu.Unlock()
	if !stillAway {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Every server of a tailnet arms this timer for a node it sees
	// offline; the first deletes, the others find it gone.
	if err := m.s.cfg.Store.DeleteNode(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		m.s.log.Error("deleting ephemeral node", "node", id, "err", err)
		return
	} else if err == nil {
		m.s.log.Info("ephemeral node removed after disconnect", "node", id)
		m.s.out.nodes(changefeed.KindRemoved, id)
	}
	m.remove(id, "this ephemeral node was removed after being disconnected")
}

// update applies a node's Update.
func (m *mapper) update(id wire.NodeID, u *wire.Update) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.nodes[id]
	if e == nil {
		return
	}
	// Only what changed goes out: an update repeating what the server
	// holds costs the peers nothing, and new host facts travel as a
	// patch of their own rather than the whole record.
	var c change
	if u.Endpoints != nil && !slices.Equal(e.n.Endpoints, *u.Endpoints) {
		e.n.Endpoints = *u.Endpoints
		c |= chRuntime
	}
	if u.HomeRegion >= 0 && u.HomeRegion != e.n.HomeRegion {
		e.n.HomeRegion = u.HomeRegion
		c |= chRuntime
	}
	if h := m.discoHolderLocked(u.DiscoKey, id); h != 0 {
		m.s.log.Warn("update names another node's disco key; key ignored", "node", id, "holder", h)
	} else if !u.DiscoKey.IsZero() && u.DiscoKey != e.n.DiscoKey {
		m.indexDiscoLocked(id, e.n.DiscoKey, u.DiscoKey)
		e.n.DiscoKey = u.DiscoKey
		c |= chRuntime
	}
	if u.Hostinfo != nil && !reflect.DeepEqual(e.n.Hostinfo, u.Hostinfo) {
		e.n.Hostinfo = u.Hostinfo
		c |= chHostinfo
	}
	if c == 0 {
		return
	}
	e.enc = nil
	m.markLocked(id, c)
	m.persist[id] = struct{}{}
}

// persistLoop writes changed runtime facts (endpoints, home region, disco
// key, hostinfo, last seen) to the store every interval, one write per
// changed node however often it changed, until ctx ends; then it writes
// what is left.
func (m *mapper) persistLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.persistNow()
			return
		case <-t.C:
			m.persistNow()
		}
	}
}

// runtimeOf is the part of n the store keeps as runtime facts.
func runtimeOf(n *wire.Node) store.NodeRuntime {
	return store.NodeRuntime{DiscoKey: n.DiscoKey, Endpoints: n.Endpoints,
		HomeRegion: n.HomeRegion, Hostinfo: n.Hostinfo, LastSeen: n.LastSeen}
}

func (m *mapper) persistNow() {
	m.mu.Lock()
	todo := make(map[wire.NodeID]store.NodeRuntime, len(m.persist))
	for id := range m.persist {
		if e := m.nodes[id]; e != nil {
			todo[id] = runtimeOf(&e.n)
		}
	}
	clear(m.persist)
	m.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	defer func(start time.Time) { m.s.feedStats.notePersist(len(todo), time.Since(start)) }(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// One call for the round, in a few transactions, however many nodes
	// reported: 10,000 nodes connecting cost the store a few dozen
	// commits, not 10,000.
	missing, err := m.s.cfg.Store.SetNodeRuntimes(ctx, todo)
	if err != nil {
		// The database is down, or the round did not finish: all of
		// it is tried again on the next tick (writing a node twice is
		// harmless), unless the node left meanwhile.
		m.s.log.Warn("saving node runtime", "nodes", len(todo), "err", err)
		m.mu.Lock()
		for id := range todo {
			if m.nodes[id] != nil {
				m.persist[id] = struct{}{}
			}
		}
		m.mu.Unlock()
		return
	}
	for _, id := range missing {
		delete(todo, id)
	}
	// The other servers read the facts from the store, so they hear of
	// them only once written.
	m.s.out.nodes(changefeed.KindRuntime, slices.Sorted(maps.Keys(todo))...)
}

// remove takes a node out of every map and closes its stream with reason.
func (m *mapper) remove(id wire.NodeID, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(id, reason)
}

// removeLocked is remove with m.mu held.
func (m *mapper) removeLocked(id wire.NodeID, reason string) {
	e := m.nodes[id]
	if e == nil {
		return
	}
	delete(m.nodes, id)
	delete(m.dirty, id)
	m.indexNodeKeyLocked(id, e.n.NodeKey, key.NodePublic{})
	m.indexDiscoLocked(id, e.n.DiscoKey, key.DiscoPublic{})
	m.recompile[id] = struct{}{}
	if e.gone != nil {
		e.gone.Stop()
	}
	if e.expiry != nil {
		e.expiry.Stop()
	}
	if e.sess != nil {
		e.sess.fail(&wire.ErrorMessage{Code: wire.CodeNotRegistered, Message: reason})
	}
	if !e.revoked {
		m.removed = append(m.removed, id)
	}
	m.scheduleLocked()
}

// closeAll closes every stream and stops the timers; nothing is sent
// after it.
func (m *mapper) closeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, e := range m.nodes {
		if e.sess != nil {
			m.s.spawn(e.sess.close)
		}
		if e.gone != nil {
			e.gone.Stop()
			e.gone = nil
		}
		if e.expiry != nil {
			e.expiry.Stop()
			e.expiry = nil
		}
	}
}

// keepAliveLoop sends a keepalive to every stream that was otherwise idle
// for a whole interval, until ctx ends.
func (m *mapper) keepAliveLoop(ctx context.Context) {
	t := time.NewTicker(m.s.cfg.KeepAlive)
	defer t.Stop()
	frame := wire.AppendMessage(nil, wire.MsgKeepAlive, nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		for _, e := range m.nodes {
			if ss := e.sess; ss != nil {
				ss.lock()
				idle := !ss.sent
				ss.sent = false
				ss.unlock()
				if idle {
					ss.enqueue(frame)
				}
			}
		}
		m.mu.Unlock()
	}
}

// visible reports whether a may see b: the test hook when set, else the
// compiled policy. m.mu is held.
func (m *mapper) visible(a, b *wire.Node) bool {
	if m.s.cfg.Visible != nil {
		return m.s.cfg.Visible(a, b)
	}
	return m.compiled.CanSee(a.ID, b.ID)
}

// writeFullMap writes ss's full map. It collects, under m.mu, the
// current self record and references to the visible peers' cached
// encodings (which are never modified, only replaced), then streams them
// out without the lock and without ever holding the whole map in one
// buffer. Deltas queued before this point may repeat what the map already
// says; deltas are idempotent, so that is harmless.
func (m *mapper) writeFullMap(ss *session) error {
	m.mu.Lock()
	e := m.nodes[ss.id]
	if e == nil || e.sess != ss || e.revoked {
		m.mu.Unlock()
		return nil
	}
	head := []byte(`{"seq":`)
	// The seq of the moment the stream started, so that the deltas
	// queued behind this map still count upward from it.
	head = strconv.AppendUint(head, ss.fullSeq, 10)
	head = append(head, `,"full":true,"server_time":`...)
	head = append(head, mustJSON(m.s.cfg.Now().UTC())...)
	head = append(head, `,"self":`...)
	head = append(head, e.encoded()...)
	head = append(head, `,"peers":[`...)
	refs := make([][]byte, 0, len(m.nodes))
	size := 0
	for pid, pe := range m.nodes {
		if pid == ss.id || pe.revoked || !m.visible(&e.n, &pe.n) {
			continue
		}
		enc := pe.encoded()
		refs = append(refs, enc)
		size += len(enc) + 1
	}
	tail := append(append([]byte(`],"relay_map":`), m.relay...), `,"dns":`...)
	tail = append(append(tail, m.dns...), `,"packet_filter":`...)
	tail = append(append(tail, m.filterForLocked(ss.id, e)...), '}')
	m.mu.Unlock()

	if len(refs) > 0 {
		size-- // no comma after the last peer
	}
	size += len(head) + len(tail)
	bw := bufio.NewWriterSize(ss.conn, coalesceLimit)
	bw.WriteByte(byte(wire.MsgMapResponse))
	bw.Write([]byte{byte(size >> 24), byte(size >> 16), byte(size >> 8), byte(size)})
	bw.Write(head)
	for i, enc := range refs {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(enc)
	}
	bw.Write(tail)
	return bw.Flush()
}

// frameHeader fills the 5 bytes reserved at the start of b.
func frameHeader(b []byte, t wire.MsgType) []byte {
	b[0] = byte(t)
	n := uint32(len(b) - 5)
	b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return b
}

// part is one node's change, encoded once for all receivers.
type part struct {
	id    wire.NodeID
	entry *nodeEntry
	full  []byte // the node's record, for peers_changed; or nil
	patch []byte // a PeerPatch; or nil
}

// peerPatch is the patch that carries change c of node id, whose record
// is n. The fields it carries are the ones sameRecord ignores (see
// drift_test.go).
func peerPatch(id wire.NodeID, n *wire.Node, c change) *wire.PeerPatch {
	pp := &wire.PeerPatch{ID: id}
	if c&chOnline != 0 {
		online, last := n.Online, n.LastSeen
		pp.Online, pp.LastSeen = &online, &last
	}
	if c&chRuntime != 0 {
		eps, hr, dk := n.Endpoints, n.HomeRegion, n.DiscoKey
		if eps == nil {
			eps = []netip.AddrPort{}
		}
		pp.Endpoints, pp.HomeRegion, pp.DiscoKey = &eps, &hr, &dk
	}
	if c&chHostinfo != 0 && n.Hostinfo != nil {
		pp.Hostinfo = n.Hostinfo
	}
	return pp
}

// flush sends the changes gathered in the batch window.
func (m *mapper) flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushing = false
	if m.closed {
		return
	}
	views := m.recompileLocked()
	if len(m.dirty) == 0 && len(m.removed) == 0 && len(views) == 0 {
		return
	}
	m.seq++
	ids := make([]wire.NodeID, 0, len(m.dirty))
	for id := range m.dirty {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]part, 0, len(ids))
	selfChanged := map[wire.NodeID]bool{}
	for _, id := range ids {
		c := m.dirty[id]
		e := m.nodes[id]
		if e == nil || e.revoked {
			continue
		}
		p := part{id: id, entry: e}
		if c&chFull != 0 {
			p.full = e.encoded()
			selfChanged[id] = true
		} else {
			p.patch = mustJSON(peerPatch(id, &e.n, c))
		}
		parts = append(parts, p)
	}
	removed := m.removed
	clear(m.dirty)
	m.removed = nil

	// Receivers that get the same selection of parts share one frame;
	// with no policy that is every node but the changed ones.
	frames := map[string][]byte{}
	sig := make([]byte, len(parts))
	for rid, r := range m.nodes {
		if r.sess == nil || r.revoked {
			continue
		}
		send := len(removed) > 0
		for i := range parts {
			sig[i] = 0
			if parts[i].id != rid && m.visible(&r.n, &parts[i].entry.n) {
				sig[i] = 1
				send = true
			}
		}
		if vc := views[rid]; vc != nil {
			r.sess.enqueue(m.viewFrame(parts, sig, removed, r, selfChanged[rid], vc))
			continue
		}
		if selfChanged[rid] {
			r.sess.enqueue(m.deltaFrame(parts, sig, removed, r.encoded()))
			continue
		}
		if !send {
			continue
		}
		f, ok := frames[string(sig)]
		if !ok {
			f = m.deltaFrame(parts, sig, removed, nil)
			frames[string(sig)] = f
		}
		r.sess.enqueue(f)
	}
}

// deltaFrame encodes one delta holding the selected parts.
func (m *mapper) deltaFrame(parts []part, sig []byte, removed []wire.NodeID, self []byte) []byte {
	return m.frame(parts, sig, removed, self, nil)
}

// viewFrame is deltaFrame for one receiver whose view the policy changed:
// peers that came into view are sent whole, those that left are removed,
// and a new filter is carried.
func (m *mapper) viewFrame(parts []part, sig []byte, removed []wire.NodeID, r *nodeEntry, selfChanged bool, vc *viewChange) []byte {
	var self []byte
	if selfChanged {
		self = r.encoded()
	}
	return m.frame(parts, sig, removed, self, vc)
}

// frame encodes a delta: the selected parts, removals, and the receiver's
// own changes in vc (nil for none).
func (m *mapper) frame(parts []part, sig []byte, removed []wire.NodeID, self []byte, vc *viewChange) []byte {
	if vc == nil {
		vc = &viewChange{}
	}
	b := make([]byte, 5, 128+len(self)+len(vc.filter))
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, m.seq, 10)
	if self != nil {
		b = append(b, `,"self":`...)
		b = append(b, self...)
	}
	list := func(name string, pick func(p *part) []byte, extra [][]byte) {
		first := true
		add := func(v []byte) {
			if first {
				b = append(b, `,"`+name+`":[`...)
				first = false
			} else {
				b = append(b, ',')
			}
			b = append(b, v...)
		}
		for i := range parts {
			if v := pick(&parts[i]); sig[i] != 0 && v != nil {
				add(v)
			}
		}
		for _, v := range extra {
			add(v)
		}
		if !first {
			b = append(b, ']')
		}
	}
	var added [][]byte
	for _, e := range vc.add {
		added = append(added, e.encoded())
	}
	list("peers_changed", func(p *part) []byte { return p.full }, added)
	list("peers_patched", func(p *part) []byte { return p.patch }, nil)
	if all := append(slices.Clip(removed), vc.remove...); len(all) > 0 {
		b = append(b, `,"peers_removed":`...)
		b = append(b, mustJSON(all)...)
	}
	if vc.filter != nil {
		b = append(b, `,"packet_filter":`...)
		b = append(b, vc.filter...)
	}
	b = append(b, '}')
	return frameHeader(b, wire.MsgMapResponse)
}

// setDNS replaces the tailnet's DNS configuration and sends it at once to
// every live stream, as a delta of its own: every node gets the same
// configuration, so one frame serves them all. A stream whose full map is
// being written may get the new value twice, which is harmless (deltas are
// idempotent).
func (m *mapper) setDNS(cfg *wire.DNSConfig) {
	m.mu.Lock()
	defer m.mu.Unlock()
	enc := mustJSON(cfg)
	if m.closed || string(enc) == string(m.dns) {
		return
	}
	m.dns = enc
	m.seq++
	b := make([]byte, 5, 32+len(enc))
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, m.seq, 10)
	b = append(append(append(b, `,"dns":`...), enc...), '}')
	frame := frameHeader(b, wire.MsgMapResponse)
	for _, e := range m.nodes {
		if e.sess != nil {
			e.sess.enqueue(frame)
		}
	}
}

package control

import (
	"context"
	"time"

	"weft/internal/changefeed"
	"weft/internal/wire"
)

// Liveness of the servers sharing a database (docs/ha.md). Which server
// holds a node's stream is known only from the change feed's online and
// offline events, so a server that dies without saying its streams ended
// (SIGKILL, a host gone) would leave its nodes listed online elsewhere
// for good. Each server therefore keeps a liveness row in the store and
// bumps its counter every HeartbeatInterval; every server reads the
// others' counters at the same pace and times them with its own clock.
// A counter that stood still for ServerTimeout is claimed in one store
// transaction (exactly one claimer wins), and the winner publishes
// KindGone on the feed: every server, the winner included, then marks
// offline the nodes it last heard stream at the dead one. The bound, from
// the dead server's last beat to its nodes shown offline everywhere, is
// ServerTimeout plus two HeartbeatIntervals plus the feed's delay.

// Defaults of Config.HeartbeatInterval and Config.ServerTimeout.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultServerTimeout     = 15 * time.Second
)

// seenBeat is another server's counter as last read, and when (by this
// server's clock) it was first read with that value.
type seenBeat struct {
	beat  int64
	since time.Time
}

// livenessLoop beats and watches the other servers until ctx ends.
func (s *Server) livenessLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	seen := map[string]seenBeat{}
	failing := false
	for beat := int64(1); ; beat++ {
		err := s.heartbeat(ctx, beat)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				s.log.Warn("liveness: heartbeat not written; the other servers take this one for dead after the server timeout",
					"err", err, "timeout", s.cfg.ServerTimeout)
			}
			failing = true
			// Unable to reach the store, this server cannot tell a
			// silent peer from its own outage: it starts timing
			// afresh once it reaches the store again.
			clear(seen)
		case err == nil:
			if failing {
				s.log.Info("liveness: heartbeat written again")
			}
			failing = false
			s.watchPeers(ctx, seen, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat writes this server's beat. When the row was gone, the others
// took this server for dead (it could not reach the store for
// ServerTimeout) and marked its nodes offline: it says again which nodes
// stream here (as it does when it hears the gone event about itself).
func (s *Server) heartbeat(ctx context.Context, beat int64) error {
	bctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
	defer cancel()
	known, err := s.cfg.Store.Heartbeat(bctx, s.cfg.Feed.Origin(), beat)
	if err != nil {
		return err
	}
	if !known && beat > 1 {
		s.log.Warn("liveness: the other servers took this server for dead; announcing its streams again")
		for _, id := range s.m.streaming() {
			s.out.setOnline(id, true)
		}
	}
	return nil
}

// watchPeers reads the other servers' counters at now and claims those
// that stood still for ServerTimeout.
func (s *Server) watchPeers(ctx context.Context, seen map[string]seenBeat, now time.Time) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
	defer cancel()
	rows, err := s.cfg.Store.ListServers(rctx)
	if err != nil {
		clear(seen)
		return
	}
	self := s.cfg.Feed.Origin()
	live := make(map[string]bool, len(rows))
	for _, r := range rows {
		if r.Origin == self {
			continue
		}
		live[r.Origin] = true
		prev, ok := seen[r.Origin]
		if !ok || prev.beat != r.Beat {
			seen[r.Origin] = seenBeat{beat: r.Beat, since: now}
			continue
		}
		if now.Sub(prev.since) < s.cfg.ServerTimeout {
			continue
		}
		claimed, err := s.cfg.Store.ClaimDeadServer(rctx, r.Origin, r.Beat)
		if err != nil {
			continue // timed afresh below if the store stays away
		}
		delete(seen, r.Origin)
		if claimed {
			s.log.Warn("liveness: server silent for the server timeout; marking its nodes offline",
				"server", r.Origin, "silent", now.Sub(prev.since).Round(time.Second))
			s.serverGone(r.Origin)
			s.out.serverGone(r.Origin)
		}
	}
	for o := range seen {
		if !live[o] {
			delete(seen, o) // removed: stopped cleanly, or claimed by another
		}
	}
}

// serverGone marks offline every node this server last heard stream at
// the server origin, which died (KindGone).
func (s *Server) serverGone(origin string) {
	for _, id := range s.m.heldAt(origin) {
		s.m.remoteOnline(id, origin, false)
	}
}

// heldAt lists the nodes last heard streaming at the server origin.
func (m *mapper) heldAt(origin string) []wire.NodeID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.NodeID
	for id, e := range m.nodes {
		if e.remoteAt == origin {
			out = append(out, id)
		}
	}
	return out
}

// leave tells the other servers, as this one closes, that its streams
// all ended, and removes its liveness row. Close calls it after the
// outbox stopped, so it publishes directly.
func (s *Server) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	origin := s.cfg.Feed.Origin()
	if err := s.cfg.Feed.Publish(ctx, changefeed.Event{Kind: changefeed.KindGone, Server: origin}); err != nil {
		s.log.Warn("liveness: could not tell the other servers this one stopped; they find out after the server timeout", "err", err)
	}
	if err := s.cfg.Store.RemoveServer(ctx, origin); err != nil {
		s.log.Warn("liveness: removing this server's liveness row", "err", err)
	}
}

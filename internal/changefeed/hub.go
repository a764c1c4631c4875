package changefeed

import (
	"context"
	"sync"
)

// Hub carries events between the feeds it made, in one process: one
// server on SQLite has a Hub of its own (with nobody to tell), and tests
// run several servers on one store through one Hub.
type Hub struct {
	mu      sync.Mutex // guards members
	members []*hubFeed
}

// NewHub returns an empty Hub.
func NewHub() *Hub { return &Hub{} }

// Feed returns a new member of the hub with a fresh origin.
func (h *Hub) Feed() Feed {
	f := &hubFeed{hub: h, origin: NewOrigin(), q: newQueue()}
	h.mu.Lock()
	h.members = append(h.members, f)
	h.mu.Unlock()
	return f
}

// hubFeed is one member of a Hub. Events wait in its queue until its Run
// takes them, so Publish never blocks on a slow receiver.
type hubFeed struct {
	hub    *Hub
	origin string
	q      *queue
}

func (f *hubFeed) Origin() string { return f.origin }
func (f *hubFeed) Err() error     { return nil }

func (f *hubFeed) Publish(ctx context.Context, ev Event) error {
	ev.Version, ev.Origin = Version, f.origin
	if err := ev.Check(); err != nil {
		return err
	}
	f.hub.mu.Lock()
	others := make([]*hubFeed, 0, len(f.hub.members))
	for _, m := range f.hub.members {
		if m != f {
			others = append(others, m)
		}
	}
	f.hub.mu.Unlock()
	for _, m := range others {
		m.q.push(ev)
	}
	return nil
}

func (f *hubFeed) Run(ctx context.Context, h func([]Event)) error {
	// A member queues events from the moment Feed made it, so nothing
	// published since can have been missed: no resync.
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.q.wake:
		}
		if evs := f.q.take(); len(evs) > 0 && ctx.Err() == nil {
			h(evs)
		}
	}
}

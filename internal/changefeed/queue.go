package changefeed

import "sync"

// MaxQueued is how many received events may wait for the handler of Run.
// Past it they are dropped and the handler gets one KindResync instead:
// re-reading everything once costs less than working through a backlog
// that long, and the memory a stalled handler holds stays bounded.
const MaxQueued = 10000

// queue holds the events a feed received and its Run has not yet handed
// to the handler, in the order they came. Filling it never blocks.
type queue struct {
	wake chan struct{} // signalled when events were added

	mu     sync.Mutex // guards the fields below
	evs    []Event
	resync bool // events were dropped: a KindResync goes first
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

// push adds ev, or drops everything waiting for a resync when the queue
// is full.
func (q *queue) push(ev Event) {
	q.mu.Lock()
	if len(q.evs) >= MaxQueued {
		q.evs, q.resync = nil, true
	}
	q.evs = append(q.evs, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take empties the queue: everything that came since the last take, in
// order, after a KindResync if events were dropped.
func (q *queue) take() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.evs
	if q.resync {
		evs = append([]Event{{Version: Version, Kind: KindResync}}, evs...)
	}
	q.evs, q.resync = nil, false
	return evs
}

package control

import (
	"sync"
	"time"

	"weft/internal/wire"
)

// Update rate limiting. Every change a node reports reaches every node
// that sees it, so a node that sends updates as fast as it can would make
// the server send N times its own rate. Each channel therefore passes a
// node's updates through a token bucket (Config.UpdateRate, UpdateBurst):
// within it they apply at once; past it they are merged, the newest value
// of each field winning, and applied when the bucket allows. Nothing is
// lost, only coalesced. A node's ordinary life (a few endpoint changes on
// roaming, a network report every half minute) stays within the burst.

// Defaults for Config's zero fields.
const (
	DefaultUpdateRate  = 1.0 // updates per second per node, after the burst
	DefaultUpdateBurst = 8
)

// updateLimiter is one channel's bucket and its merged, waiting update.
type updateLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time
	apply func(*wire.Update) // applies an update; called with mu held

	mu      sync.Mutex // guards the fields below; held while applying
	bucket  bucket
	pending *wire.Update // merged updates waiting for a token
	timer   *time.Timer
	stopped bool
}

func newUpdateLimiter(rate float64, burst int, now func() time.Time, apply func(*wire.Update)) *updateLimiter {
	return &updateLimiter{rate: rate, burst: float64(burst), now: now, apply: apply, bucket: bucket{tokens: float64(burst), last: now()}}
}

// offer applies u now if the bucket allows and nothing waits, and merges
// it into the waiting update otherwise.
func (l *updateLimiter) offer(u *wire.Update) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	if l.pending == nil && l.takeLocked() {
		l.apply(u)
		return
	}
	if l.pending == nil {
		l.pending = &wire.Update{HomeRegion: -1}
	}
	mergeUpdate(l.pending, u)
	l.armLocked()
}

// takeLocked takes a token if there is one. l.mu is held.
func (l *updateLimiter) takeLocked() bool {
	return l.bucket.take(l.now(), l.rate, l.burst)
}

// armLocked schedules the waiting update for when a token is due. l.mu
// is held.
func (l *updateLimiter) armLocked() {
	if l.timer != nil {
		return
	}
	wait := time.Duration((1 - l.bucket.tokens) / l.rate * float64(time.Second))
	l.timer = time.AfterFunc(max(wait, time.Millisecond), l.due)
}

func (l *updateLimiter) due() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if l.stopped || l.pending == nil {
		return
	}
	if !l.takeLocked() {
		l.armLocked()
		return
	}
	u := l.pending
	l.pending = nil
	l.apply(u)
}

// stop drops whatever waits; the channel has ended (a new stream sends
// its facts afresh in its map request).
func (l *updateLimiter) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped, l.pending = true, nil
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
}

// mergeUpdate folds u into into: each field u sets replaces into's.
func mergeUpdate(into, u *wire.Update) {
	if u.Endpoints != nil {
		into.Endpoints = u.Endpoints
	}
	if u.HomeRegion >= 0 {
		into.HomeRegion = u.HomeRegion
	}
	if !u.DiscoKey.IsZero() {
		into.DiscoKey = u.DiscoKey
	}
	if u.Hostinfo != nil {
		into.Hostinfo = u.Hostinfo
	}
	if u.AdvertisedRoutes != nil {
		into.AdvertisedRoutes = u.AdvertisedRoutes
	}
}

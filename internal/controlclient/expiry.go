package controlclient

import (
	"fmt"
	"time"

	"weft/internal/wire"
)

// Key expiry on the node's side. The control server removes a node from
// every map when its key expires, but a node cut off from control would
// never hear of it; so each node also judges expiry itself, from the
// expiry times in its map, on the server's time as measured at the last
// full map (NetMap.ClockOffset). A node whose clock is off by hours thus
// still drops an expired peer on time.

// ServerNow returns the server's time as this node estimates it at local
// time now.
func (nm *NetMap) ServerNow(now time.Time) time.Time {
	return now.Add(nm.ClockOffset)
}

// SelfExpired reports whether this node's own key has expired at local
// time now, and when. A nil map has not.
func (nm *NetMap) SelfExpired(now time.Time) (bool, time.Time) {
	if nm == nil || nm.Self == nil || nm.Self.KeyExpiry.IsZero() {
		return false, time.Time{}
	}
	return !nm.ServerNow(now).Before(nm.Self.KeyExpiry), nm.Self.KeyExpiry
}

// Live returns nm without the peers whose key has expired at local time
// now (nm itself when none has), and the local time at which the next key
// in the map (a peer's or its own) expires; zero when none will.
func (nm *NetMap) Live(now time.Time) (live *NetMap, next time.Time) {
	if nm == nil {
		return nil, time.Time{}
	}
	snow := nm.ServerNow(now)
	live = nm
	consider := func(exp time.Time) {
		if exp.IsZero() || !snow.Before(exp) {
			return
		}
		if local := exp.Add(-nm.ClockOffset); next.IsZero() || local.Before(next) {
			next = local
		}
	}
	if nm.Self != nil {
		consider(nm.Self.KeyExpiry)
	}
	for id, p := range nm.Peers {
		if p.KeyExpiry.IsZero() || snow.Before(p.KeyExpiry) {
			consider(p.KeyExpiry)
			continue
		}
		if live == nm {
			live = nm.Clone()
		}
		delete(live.Peers, id)
	}
	return live, next
}

// ExpiredError is what a node whose own key expired reports: the node
// stopped its data plane and needs a new pre-auth key.
func ExpiredError(at time.Time) error {
	return &wire.ErrorMessage{
		Code: wire.CodeNodeKeyExpired,
		Message: fmt.Sprintf("this node's key expired at %s; run `weft up --auth-key KEY` with a new pre-auth key "+
			"(an administrator makes one with `weft admin keys create`)", at.UTC().Format(time.RFC3339)),
	}
}

package node

import (
	"time"

	"weft/internal/controlclient"
)

// Key expiry on the node. The control server removes an expired node from
// every map and ends its stream, but a node cut off from control must not
// keep an expired peer, nor its own expired key, in use: the daemon hands
// the data plane only the peers whose keys are live on the server's clock
// (controlclient.NetMap.Live), re-checks at the next expiry time in the
// map with a timer, and stops the data plane when this node's own key
// expires, saying why.

// checkExpiryLocked hands the engine the live part of d.nm, arms the timer
// for the next expiry in it, and, when this node's own key has expired,
// detaches the engine and marks the node logged out. It returns an engine
// the caller must close once d.mu is released, or nil. d.mu is held.
func (d *Daemon) checkExpiryLocked() Engine {
	if d.expTimer != nil {
		d.expTimer.Stop()
		d.expTimer = nil
	}
	if d.nm == nil {
		return nil
	}
	now := time.Now()
	if expired, at := d.nm.SelfExpired(now); expired {
		return d.selfExpiredLocked(at)
	}
	live, next := d.nm.Live(now)
	if d.engine != nil {
		d.engine.SetNetMap(live)
	}
	if !next.IsZero() {
		d.expTimer = time.AfterFunc(next.Sub(now), d.expiryDue)
	}
	return nil
}

// selfExpiredLocked records that this node's key expired at at: the
// data plane is detached (and returned to be closed), and the node needs
// a new pre-auth key. d.mu is held.
func (d *Daemon) selfExpiredLocked(at time.Time) Engine {
	eng := d.engine
	d.engine, d.engErr = nil, nil
	d.expired = controlclient.ExpiredError(at)
	if d.prefs.Registered {
		d.prefs.Registered = false
		if err := d.st.SavePrefs(d.prefs); err != nil {
			d.log.Error("saving prefs", "err", err)
		}
	}
	if eng != nil {
		d.log.Warn("this node's key expired; stopping the data plane", "expiry", at)
	}
	return eng
}

// expiryDue runs when a key in the current map expires.
func (d *Daemon) expiryDue() {
	d.mu.Lock()
	eng := d.checkExpiryLocked()
	d.mu.Unlock()
	d.closeEngine(eng)
}

// closeEngine closes a detached data plane; nil is a no-op.
func (d *Daemon) closeEngine(eng Engine) {
	if eng == nil {
		return
	}
	if err := eng.Close(); err != nil {
		d.log.Error("closing the data plane", "err", err)
	}
}

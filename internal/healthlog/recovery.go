package healthlog

import (
	"context"
	"fmt"
	"sync"
	"time"

	"weft/internal/localapi"
)

// Recovery measurement bounds: how often the daemon looks, how long it
// keeps trying, and how many peers it pings for a direct path.
const (
	recoveryPoll  = 100 * time.Millisecond
	recoveryBound = 5 * time.Minute
	recoveryPeers = 8
	recoveryPing  = time.Second
)

// RecoverySource is what MeasureRecovery reads from the daemon.
type RecoverySource interface {
	Status(ctx context.Context) (*localapi.Status, error)
	Ping(ctx context.Context, req localapi.PingRequest) (*localapi.PingResult, error)
}

// MeasureRecovery measures a restarted node's way back, from started (the
// daemon's start): to its first map from the control server, then to the
// first pong a peer sends over a direct path (it pings a few online peers,
// as traffic would, since an idle node looks for no path). It returns the
// event to record once both are reached, or after recoveryBound with what
// was; ok is false when ctx ended first.
func MeasureRecovery(ctx context.Context, src RecoverySource, started time.Time, unclean bool) (ev localapi.HealthEvent, ok bool) {
	rec := &localapi.Recovery{Started: started, Unclean: unclean}
	bound := time.NewTimer(recoveryBound - time.Since(started))
	defer bound.Stop()
	t := time.NewTicker(recoveryPoll)
	defer t.Stop()
	for rec.DirectMS == 0 {
		select {
		case <-ctx.Done():
			return ev, false
		case <-bound.C:
			return recoveryEvent(rec), true
		case <-t.C:
		}
		st, err := src.Status(ctx)
		if err != nil || st.BackendState != localapi.StateRunning {
			continue
		}
		if rec.RegisteredMS == 0 {
			rec.RegisteredMS = msSince(started)
		}
		if peer := firstDirect(ctx, src, st); peer != "" {
			rec.DirectMS, rec.DirectPeer = msSince(started), peer
		}
	}
	return recoveryEvent(rec), true
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// firstDirect pings up to recoveryPeers online peers and returns the name
// of one whose pong came over a direct path, or "".
func firstDirect(ctx context.Context, src RecoverySource, st *localapi.Status) string {
	var mu sync.Mutex
	found := ""
	var wg sync.WaitGroup
	n := 0
	for _, p := range st.Peers {
		if p == nil || p.Node == nil || !p.Online || n == recoveryPeers {
			continue
		}
		n++
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, recoveryPing)
			defer cancel()
			res, err := src.Ping(pctx, localapi.PingRequest{Peer: name})
			if err == nil && res.Path.Kind == localapi.PathDirect {
				mu.Lock()
				if found == "" {
					found = name
				}
				mu.Unlock()
			}
		}(p.Name)
	}
	wg.Wait()
	return found
}

// recoveryEvent says what the measurement found.
func recoveryEvent(rec *localapi.Recovery) localapi.HealthEvent {
	how := "restarted"
	if rec.Unclean {
		how = "restarted after an unclean stop (host state was left behind)"
	}
	text := how + ": "
	switch {
	case rec.RegisteredMS == 0:
		text += fmt.Sprintf("not connected to the control server within %v", recoveryBound)
	case rec.DirectMS == 0:
		text += fmt.Sprintf("connected after %s; no direct path within %v", fmtMS(rec.RegisteredMS), recoveryBound)
	default:
		text += fmt.Sprintf("connected after %s, first direct pong (from %s) after %s", fmtMS(rec.RegisteredMS), rec.DirectPeer, fmtMS(rec.DirectMS))
	}
	return localapi.HealthEvent{Time: time.Now(), Kind: localapi.EventRecovery, Text: text, Recovery: rec}
}

func fmtMS(ms float64) string {
	return (time.Duration(ms * float64(time.Millisecond))).Round(10 * time.Millisecond).String()
}

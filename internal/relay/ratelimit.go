package relay

import (
	"context"
	"time"
)

// tokenBucket limits one client's bytes per second. It is used only by the
// client's reader goroutine, so it needs no lock. Waiting (rather than
// dropping) pushes back through TCP, which slows the sender down the way a
// slower link would.
type tokenBucket struct {
	rate   float64 // bytes per second
	burst  float64 // bucket size in bytes
	tokens float64
	last   time.Time
}

func newTokenBucket(bytesPerSec int64, now time.Time) *tokenBucket {
	rate := float64(bytesPerSec)
	// The bucket must hold at least one largest frame, or a big frame
	// could never pass.
	burst := max(rate, float64(MaxFramePayload+frameHeaderLen))
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// delay takes n bytes' worth of tokens and returns how long the caller
// must wait before the bytes are within the rate.
func (b *tokenBucket) delay(n int, now time.Time) time.Duration {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// wait takes n bytes' worth of tokens, sleeping as needed, and returns
// early with the context's error if ctx ends first.
func (b *tokenBucket) wait(ctx context.Context, n int) error {
	d := b.delay(n, time.Now())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

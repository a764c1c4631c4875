package relay

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"weft/internal/key"
)

// TestReconnectBackoff checks, on synctest's fake clock, that a client
// that cannot reach its relay retries after jittered waits that double
// from MinBackoff and stop growing at MaxBackoff.
func TestReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const minWait, maxWait = time.Second, 8 * time.Second
		var mu sync.Mutex
		var attempts []time.Time
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			return nil, errors.New("relay unreachable")
		}
		c, err := NewClient(ClientOptions{URLs: []string{"http://relay.test"}, NodeKey: key.NewNode(),
			Dialer: dial, MinBackoff: minWait, MaxBackoff: maxWait})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(t.Context()); err == nil {
			t.Fatal("Connect to an unreachable relay succeeded")
		}
		time.Sleep(2 * time.Minute) // instant: the bubble's clock
		c.Close()

		mu.Lock()
		defer mu.Unlock()
		if len(attempts) < 10 {
			t.Fatalf("%d attempts in two minutes, want at least 10", len(attempts))
		}
		want := minWait
		for i := 1; i < len(attempts); i++ {
			gap := attempts[i].Sub(attempts[i-1])
			if gap < want/2 || gap >= want*3/2 {
				t.Errorf("wait before attempt %d = %v, want within [%v, %v)", i+1, gap, want/2, want*3/2)
			}
			want = min(2*want, maxWait)
		}
	})
}

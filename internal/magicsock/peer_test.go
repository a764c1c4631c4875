package magicsock

import (
	"net/netip"
	"testing"
	"time"

	"weft/internal/key"
)

// TestBestPathHysteresis drives noteDirectPongLocked with pongs of chosen
// RTTs: a path is replaced only by a clearly better one (under ¾ of its
// RTT) while it is trusted, and by anything once its trust has run out.
func TestBestPathHysteresis(t *testing.T) {
	c, err := New(Options{DiscoKey: key.NewDisco(), NodeKey: key.NewNode().Public()})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort("198.51.100.1:1000")
	b := netip.MustParseAddrPort("203.0.113.1:2000")
	t0 := time.Now()
	ms := time.Millisecond
	steps := []struct {
		name string
		to   netip.AddrPort
		rtt  time.Duration
		at   time.Duration // after t0
		want netip.AddrPort
	}{
		{"first pong wins", a, 10 * ms, 0, a},
		{"slightly better stays", b, 9 * ms, 100 * ms, a},
		{"worse stays", b, 20 * ms, 200 * ms, a},
		{"clearly better switches", b, 5 * ms, 300 * ms, b},
		{"old path better again but within margin", a, 4 * ms, 400 * ms, b},
		{"current path expired: any pong switches", a, 50 * ms, 400*ms + c.timers.TrustWindow + ms, a},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := newPeer(key.NewNode().Public())
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now := t0.Add(s.at)
			sp := &sentPing{to: s.to, at: now.Add(-s.rtt)}
			p.noteDirectPongLocked(c, sp, now)
			if p.best == nil || p.best.addr != s.want {
				t.Fatalf("best = %+v; want %v", p.best, s.want)
			}
			if pa := p.path.Load(); pa == nil || pa.addr != s.want {
				t.Fatalf("published path = %+v; want %v", pa, s.want)
			}
		})
	}
}

//go:build linux

package agent_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
)

// healRounds is how many events each heal benchmark times, per iteration.
const healRounds = 10

// healSettle is how long the path stays direct before each event. Before
// a lost address reset the relay and control clients' backoff, 2 s made
// renumbering after renumbering take longer each round (2 s, then 4.8,
// 8.7, 19 s and once over 60 s), and the figures were taken with 12 s;
// since then 2 s is enough.
const healSettle = 2 * time.Second

// BenchmarkLabHeal times how long the direct path between mac and busan
// (seed lab) takes to heal after an event that breaks it, over healRounds
// events per iteration (root only), with both NATs easy ("easy") and with
// mac behind a hard NAT ("hard": r-fukuoka maps each destination to a
// port of its own, so after either event mac's traffic leaves from ports
// busan has never seen):
//
//	go test -run '^$' -bench BenchmarkLabHeal -benchtime 1x ./internal/agent/
//
// Events: "nat-rebinding" flushes both routers' conntrack (a router reboot
// or a NAT that forgot its mappings: r-busan then drops what mac sends to
// the old mapping until busan sends again); "lan-renumber" gives mac a new
// LAN address each round (192.168.2.10, then .60, .61, ...: a new DHCP
// lease), which kills every mapping r-fukuoka held for the old one.
//
// Two times per event, from just before the event: to-direct, until the
// first disco pong that came back over a direct path (pings through the
// local API, one started every 25 ms, each waiting up to 1 s), and
// first-packet, until busan receives the first of a stream of tailnet UDP
// datagrams from mac (one every 10 ms) sent after the event, over any
// path. Reported as median, min and max in milliseconds; no threshold.
func BenchmarkLabHeal(b *testing.B) {
	labtest.SkipUnlessRoot(b)
	events := []struct {
		name  string
		event func(n *labNet, round int) error
	}{
		{"nat-rebinding", func(n *labNet, _ int) error {
			for _, r := range []string{"r-busan", "r-fukuoka"} {
				if err := n.lab.FlushConntrack(r); err != nil {
					return err
				}
			}
			return nil
		}},
		{"lan-renumber", func(n *labNet, round int) error {
			// A fresh address each round: going back to an earlier one
			// could find its mappings still alive on r-fukuoka.
			from, to := fmt.Sprintf("192.168.2.%d/24", 59+round), fmt.Sprintf("192.168.2.%d/24", 60+round)
			if round == 0 {
				from = "192.168.2.10/24"
			}
			return renumber(n.lab.Node("mac"), from, to, "192.168.2.1")
		}},
	}
	shapes := []struct {
		name string
		mods []func(*netlab.Topology)
	}{
		{"easy", nil},
		{"hard", []func(*netlab.Topology){setNAT("r-fukuoka", netlab.NATHard)}},
	}
	for _, shape := range shapes {
		for _, ev := range events {
			b.Run(shape.name+"/"+ev.name, func(b *testing.B) {
				benchHeal(b, shape.mods, ev.event)
			})
		}
	}
}

// benchHeal is one BenchmarkLabHeal run: a lab changed by mods, and
// healRounds times event per iteration.
func benchHeal(b *testing.B, mods []func(*netlab.Topology), event func(n *labNet, round int) error) {
	n := startNetB(b, []string{"busan", "mac"}, mods...)
	busan := addr4(n.pair("mac", "busan"))
	mac := addr4(n.peer("busan", "mac"))
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	st, err := startStream(n, mac, netip.AddrPortFrom(busan, 4777))
	if err != nil {
		b.Fatal(err)
	}
	defer st.stop()
	var direct, first []time.Duration
	round := 0
	for range b.N {
		for range healRounds {
			// Settled and direct before each event.
			n.waitPath("mac", "busan", localapi.PathDirect, 60*time.Second)
			if _, err := pingDirect(n, time.Now(), 30*time.Second); err != nil {
				b.Fatalf("before round %d: %v", round, err)
			}
			time.Sleep(healSettle)
			t0 := time.Now()
			if err := event(n, round); err != nil {
				b.Fatal(err)
			}
			d, err := pingDirect(n, t0, 60*time.Second)
			if err != nil {
				b.Fatalf("round %d: %v", round, err)
			}
			f, err := st.firstAfter(n.ctx, t0, 60*time.Second)
			if err != nil {
				b.Fatalf("round %d: %v", round, err)
			}
			direct, first = append(direct, d), append(first, f)
			b.Logf("round %d: direct after %v, first packet after %v", round, d, f)
			round++
		}
	}
	reportSpread(b, "to-direct", direct)
	reportSpread(b, "first-packet", first)
}

// reportSpread reports the median, min and max of ds in milliseconds.
func reportSpread(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(s[len(s)/2]), name+"-ms-median")
	b.ReportMetric(ms(s[0]), name+"-ms-min")
	b.ReportMetric(ms(s[len(s)-1]), name+"-ms-max")
}

// pingDirect pings busan from mac through the local API, starting one
// ping every 25 ms (each waiting up to 1 s, at most 40 at a time), and
// returns how long after start the first pong over a direct path came
// back.
func pingDirect(n *labNet, start time.Time, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(n.ctx, limit)
	defer cancel()
	d, err := pingUntilDirect(ctx, &localapi.Client{Socket: n.tn.Socket("mac")}, "busan", start)
	if err != nil {
		return 0, fmt.Errorf("no direct pong from busan within %v", limit)
	}
	return d, nil
}

// stream sends a UDP datagram from mac's tailnet address to busan's every
// 10 ms, each carrying its send time, and records when busan receives
// each.
type stream struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	recv   []arrival // guarded by mu
	rx, tx *net.UDPConn
}

type arrival struct{ sent, recv time.Time }

func startStream(n *labNet, from netip.Addr, to netip.AddrPort) (*stream, error) {
	tx, rx, err := listenUDPPair(n, "mac", from, "busan", to)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(n.ctx)
	s := &stream{cancel: cancel, rx: rx, tx: tx}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 64)
		for {
			k, _, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			now := time.Now()
			if k < 8 {
				continue
			}
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf[:8])))
			s.mu.Lock()
			s.recv = append(s.recv, arrival{sent: sent, recv: now})
			s.mu.Unlock()
		}
	}()
	go func() {
		defer s.wg.Done()
		dst := net.UDPAddrFromAddrPort(to)
		var msg [8]byte
		every(ctx, 10*time.Millisecond, func() {
			binary.BigEndian.PutUint64(msg[:], uint64(time.Now().UnixNano()))
			tx.WriteTo(msg[:], dst) // a send error is a lost datagram, as on a real network
		})
	}()
	return s, nil
}

// firstAfter waits until a datagram sent at or after t0 has arrived and
// returns how long after t0 the first one did.
func (s *stream) firstAfter(ctx context.Context, t0 time.Time, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		var best time.Time
		for _, a := range s.recv {
			if !a.sent.Before(t0) && (best.IsZero() || a.recv.Before(best)) {
				best = a.recv
			}
		}
		s.mu.Unlock()
		if !best.IsZero() {
			return best.Sub(t0), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("no datagram sent after the event reached busan within %v", limit)
}

func (s *stream) stop() {
	s.cancel()
	s.rx.Close()
	s.tx.Close()
	s.wg.Wait()
}

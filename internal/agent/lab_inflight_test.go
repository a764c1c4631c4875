//go:build linux

package agent_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/scenario"
)

// echoFlow sends a numbered UDP datagram from one host's tailnet address
// to an echo server on another's every interval and records which came
// back, and when.
type echoFlow struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	tx, rx *net.UDPConn

	mu    sync.Mutex
	sent  []time.Time // by sequence number
	recvd map[uint32]time.Time
}

// startEchoFlow starts an echo server on to (a tailnet address of host
// toHost) and a sender on fromHost.
func startEchoFlow(n *labNet, fromHost string, from netip.Addr, toHost string, to netip.AddrPort, interval time.Duration) (*echoFlow, error) {
	tx, rx, err := listenUDPPair(n, fromHost, from, toHost, to)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(n.ctx)
	f := &echoFlow{cancel: cancel, tx: tx, rx: rx, recvd: make(map[uint32]time.Time)}
	f.wg.Add(3)
	go func() { // the echo server
		defer f.wg.Done()
		buf := make([]byte, 64)
		for {
			k, src, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			rx.WriteToUDPAddrPort(buf[:k], src)
		}
	}()
	go func() { // replies
		defer f.wg.Done()
		buf := make([]byte, 64)
		for {
			k, err := tx.Read(buf)
			if err != nil {
				return
			}
			if k < 4 {
				continue
			}
			now := time.Now()
			f.mu.Lock()
			f.recvd[binary.BigEndian.Uint32(buf)] = now
			f.mu.Unlock()
		}
	}()
	go func() { // the sender
		defer f.wg.Done()
		dst := net.UDPAddrFromAddrPort(to)
		var msg [4]byte
		every(ctx, interval, func() {
			f.mu.Lock()
			seq := uint32(len(f.sent))
			f.sent = append(f.sent, time.Now())
			f.mu.Unlock()
			binary.BigEndian.PutUint32(msg[:], seq)
			tx.WriteTo(msg[:], dst) // an error is a lost datagram, counted below
		})
	}()
	return f, nil
}

func (f *echoFlow) stop() {
	f.cancel()
	f.tx.Close()
	f.rx.Close()
	f.wg.Wait()
}

// healed waits until mac's path is direct and, since both t0 and the
// path's latest change, healRun datagrams in a row came back; it returns
// when the first of them was sent.
func (f *echoFlow) healed(ctx context.Context, l *pathLog, t0 time.Time, limit time.Duration) (time.Time, error) {
	const healRun = 50
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cs := l.since(t0); len(cs) > 0 && cs[len(cs)-1].kind == localapi.PathDirect {
			from := t0
			if last := cs[len(cs)-1].at; last.After(from) {
				from = last
			}
			// Datagrams of the last 200 ms may still be on their way.
			until := time.Now().Add(-200 * time.Millisecond)
			f.mu.Lock()
			run, start := 0, time.Time{}
			for i, at := range f.sent {
				if at.Before(from) {
					continue
				}
				if at.After(until) {
					break
				}
				if _, ok := f.recvd[uint32(i)]; !ok {
					run = 0
					continue
				}
				if run == 0 {
					start = at
				}
				if run++; run >= healRun {
					break
				}
			}
			f.mu.Unlock()
			if run >= healRun {
				return start, nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return time.Time{}, fmt.Errorf("not direct with %d datagrams in a row echoed within %v", healRun, limit)
}

// tally returns, of the datagrams sent in [from, to), how many were sent,
// which never came back, and how many of those sent while the path log
// showed the relay came back.
func (f *echoFlow) tally(from, to time.Time, onRelay func(time.Time) bool) (sent int, lost []uint32, viaRelay int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, at := range f.sent {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		sent++
		if _, ok := f.recvd[uint32(i)]; !ok {
			lost = append(lost, uint32(i))
			continue
		}
		if onRelay(at) {
			viaRelay++
		}
	}
	return sent, lost, viaRelay
}

// pathLog samples one host's path to a peer from its local API, and keeps
// each change.
type pathLog struct {
	mu      sync.Mutex
	changes []pathChange
}

type pathChange struct {
	at   time.Time
	kind string
	ep   string
}

// watchPath samples host's path to peer every 20 ms until ctx ends.
func watchPath(ctx context.Context, n *labNet, host, peer string, wg *sync.WaitGroup) *pathLog {
	l := &pathLog{}
	c := &localapi.Client{Socket: n.tn.Socket(host)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		every(ctx, 20*time.Millisecond, func() {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := c.Status(sctx)
			cancel()
			if err != nil {
				return
			}
			for _, p := range st.Peers {
				if p.Name != peer {
					continue
				}
				l.mu.Lock()
				if k := len(l.changes); k == 0 || l.changes[k-1].kind != p.Path.Kind || l.changes[k-1].ep != p.Path.Endpoint {
					l.changes = append(l.changes, pathChange{at: time.Now(), kind: p.Path.Kind, ep: p.Path.Endpoint})
				}
				l.mu.Unlock()
			}
		})
	}()
	return l
}

// since returns the changes from t on, with the path in force at t first.
func (l *pathLog) since(t time.Time) []pathChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []pathChange
	for i, c := range l.changes {
		if !c.at.Before(t) {
			if len(out) == 0 && i > 0 {
				out = append(out, l.changes[i-1])
			}
			out = append(out, c)
		}
	}
	if len(out) == 0 && len(l.changes) > 0 {
		out = append(out, l.changes[len(l.changes)-1])
	}
	return out
}

// kindAt is the path kind the log showed at t.
func (l *pathLog) kindAt(t time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	kind := ""
	for _, c := range l.changes {
		if c.at.After(t) {
			break
		}
		kind = c.kind
	}
	return kind
}

func (l *pathLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, c := range l.changes {
		fmt.Fprintf(&b, " %s:%s %s", c.at.Format("15:04:05.000"), c.kind, c.ep)
	}
	return b.String()
}

func kinds(cs []pathChange) []string {
	var out []string
	for _, c := range cs {
		if len(out) == 0 || out[len(out)-1] != c.kind {
			out = append(out, c.kind)
		}
	}
	return out
}

// TestLabInFlightFallsBackToRelay: mac sends busan a datagram every 20 ms
// over the tailnet, which busan echoes, through events that break the
// direct path. After each, mac's status shows the path direct again and
// 50 echoes in a row come back. Every datagram lost is counted and
// reported; no threshold on counts or times.
//
//   - udp-blocked: r-busan drops all UDP going out to the internet until 50 datagrams
//     sent while mac's path was the relay have come back, then lets it
//     through again. The path must go direct → relay → direct: the
//     traffic in flight falls back to the relay, flows there, and
//     returns to direct.
//   - lan-renumber (mac's LAN address changes), udp-mappings-forgotten
//     (both NATs forget their UDP mappings, as on a UDP timeout; TCP
//     lives on) and router-reboot (both routers forget everything; the
//     relay's TCP connections die too, and the check that notices takes
//     up to relay.CheckTimeout): the path must heal. These heal in about
//     a second, often just after the traffic fell back to the relay;
//     the path sequence and what the relay carried are reported, not
//     asserted, since a heal fast enough to need no relay is as good.
func TestLabInFlightFallsBackToRelay(t *testing.T) {
	n := startNet(t, 4*time.Minute, []string{"busan", "mac"})
	busan := addr4(n.pair("mac", "busan"))
	mac := addr4(n.peer("busan", "mac"))
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)

	wctx, wcancel := context.WithCancel(n.ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer wcancel()
	macLog := watchPath(wctx, n, "mac", "busan", &wg)
	busanLog := watchPath(wctx, n, "busan", "mac", &wg)
	flow, err := startEchoFlow(n, "mac", mac, "busan", netip.AddrPortFrom(busan, 4778), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer flow.stop()
	onRelay := func(at time.Time) bool { return macLog.kindAt(at) == localapi.PathRelay }

	routers := []string{"r-busan", "r-fukuoka"}
	events := []struct {
		name     string
		viaRelay bool // the path must go by the relay, and carry traffic there
		event    func(t0 time.Time) error
	}{
		{"udp-blocked", true, func(t0 time.Time) error {
			if err := blockUDP(n.lab, "r-busan", true); err != nil {
				return err
			}
			defer blockUDP(n.lab, "r-busan", false)
			const carried = 50
			err := scenario.WaitFor(n.ctx, 60*time.Second, "echoes through the relay", func() (bool, error) {
				_, _, via := flow.tally(t0, time.Now(), onRelay)
				return via >= carried, nil
			})
			if err != nil {
				return err
			}
			return blockUDP(n.lab, "r-busan", false)
		}},
		{"lan-renumber", false, func(time.Time) error {
			return renumber(n.lab.Node("mac"), "192.168.2.10/24", "192.168.2.60/24", "192.168.2.1")
		}},
		{"udp-mappings-forgotten", false, func(time.Time) error {
			for _, r := range routers {
				if err := n.lab.ForgetUDP(r); err != nil {
					return err
				}
			}
			return nil
		}},
		{"router-reboot", false, func(time.Time) error {
			for _, r := range routers {
				if err := n.lab.FlushConntrack(r); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, ev := range events {
		// Flowing and direct before the event.
		if _, err := flow.healed(n.ctx, macLog, time.Now(), 60*time.Second); err != nil {
			t.Fatalf("before %s: %v; mac's path log:%s", ev.name, err, macLog)
		}
		t0 := time.Now()
		if err := ev.event(t0); err != nil {
			t.Fatalf("%s: %v; mac's path log:%s", ev.name, err, macLog)
		}
		t1, err := flow.healed(n.ctx, macLog, t0, 60*time.Second)
		if err != nil {
			t.Fatalf("%s: %v; mac's path log:%s", ev.name, err, macLog)
		}
		seq := kinds(macLog.since(t0))
		sent, lost, viaRelay := flow.tally(t0, t1, onRelay)
		t.Logf("%s: mac's path to busan went %v, busan's to mac %v; healed %v after the event; of %d datagrams sent until then %d were lost %v, and %d sent while mac's path was the relay came back",
			ev.name, seq, kinds(busanLog.since(t0)), t1.Sub(t0).Round(time.Millisecond), sent, len(lost), lost, viaRelay)
		if seq[0] != localapi.PathDirect || seq[len(seq)-1] != localapi.PathDirect {
			t.Errorf("%s: mac's path went %v, want from direct to direct", ev.name, seq)
		}
		if ev.viaRelay && !slices.Equal(seq, []string{localapi.PathDirect, localapi.PathRelay, localapi.PathDirect}) {
			t.Errorf("%s: mac's path went %v, want direct, relay, direct", ev.name, seq)
		}
	}
	if t.Failed() {
		t.Logf("mac's path log:%s", macLog)
		t.Logf("busan's path log:%s", busanLog)
	}
}

//go:build linux

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
)

// The rows of BenchmarkLabDataPlane are time-based: each stream runs
// rowWarm (slow start, socket buffer growth) before the window of
// rowWindow over which its payload and CPU are counted.
const (
	rowWarm   = time.Second
	rowWindow = 3 * time.Second
)

// dataPlaneRounds is how many rounds each benchmark iteration measures
// ($WEFT_BENCH_ROUNDS overrides it).
const dataPlaneRounds = 4

// BenchmarkLabDataPlane measures, in one lab and side by side, one TCP
// stream over the raw veths (mac-wg → busan through a port forward on
// r-busan, the same NATs and links as the tunnel), through plain
// wireguard-go (two processes beside them, no weft), through weft's
// tunnel (mac → busan), and through busan as exit node to web in both
// directions (upload mac → web, download web → mac); and the crypto limit
// on this machine with the tunnel's bytes per daemon CPU-second as a
// fraction of it (docs/benchmarks.md).
//
// Each row is a stream of rowWarm+rowWindow, measured over the window.
// Each iteration runs dataPlaneRounds rounds; a round measures the rows
// tunnel, exit-up, raw, tunnel, exit-down, plain, rotated by one row each
// round, so every ratio is taken between rows seconds apart and no kind
// always runs first. The reported figures are medians over all rounds of
// every iteration (ratios are taken within a round, then the median), with
// the spread of the tunnel's rate and of tunnel/raw as ± half the range
// over the median:
//
//	go test -run '^$' -bench LabDataPlane -benchtime 1x ./internal/agent/
func BenchmarkLabDataPlane(b *testing.B) {
	n, plain := startDataPlaneLab(b)
	busanLAN := n.lab.Node("busan").LANAddr
	busanWAN := n.lab.Node("r-busan").WANAddr
	web := n.lab.Node("web").WANAddr
	tunAddr := addr4(n.pair("mac", "busan"))
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if _, err := n.tn.Admin(n.ctx, "routes", "approve", "busan", "exit"); err != nil {
		b.Fatal(err)
	}
	daemons := []int{n.tn.Daemon("mac").PID, n.tn.Daemon("busan").PID}
	// Path MTU discovery lifts both tunnels from 1280 once the direct
	// path's probes are answered; measure at the MTU the path allows.
	var mtu int
	err := scenario.WaitFor(n.ctx, 20*time.Second, "path MTU discovery", func() (bool, error) {
		mtu = tunnelMTU(b, n.lab.Node("mac"))
		return mtu > 1280 && tunnelMTU(b, n.lab.Node("busan")) == mtu, nil
	})
	if err != nil {
		b.Fatalf("%v: mac's weft0 MTU %d, busan's %d", err, mtu, tunnelMTU(b, n.lab.Node("busan")))
	}
	// The exit node stays selected throughout: the tunnel row goes to
	// busan's tailnet address, which is not the exit's, and the raw row
	// starts on mac-wg, whose traffic the exit node never carries.
	useExit(b, n, "mac", "busan", web, busanWAN)
	rows := map[string]streamSpec{
		"raw":       {listenNode: "busan", dialNode: "mac-wg", listen: netip.AddrPortFrom(busanLAN, 5301), dial: netip.AddrPortFrom(busanWAN, 5301)},
		"plain":     {listenNode: "busan-wg", dialNode: "mac-wg", listen: netip.AddrPortFrom(plain.addr, 5302), dial: netip.AddrPortFrom(plain.addr, 5302), pids: plain.pids},
		"tunnel":    {listenNode: "busan", dialNode: "mac", listen: netip.AddrPortFrom(tunAddr, 5303), dial: netip.AddrPortFrom(tunAddr, 5303), pids: daemons},
		"exit-up":   {listenNode: "web", dialNode: "mac", listen: netip.AddrPortFrom(web, 5304), dial: netip.AddrPortFrom(web, 5304), pids: daemons},
		"exit-down": {listenNode: "web", dialNode: "mac", listen: netip.AddrPortFrom(web, 5305), dial: netip.AddrPortFrom(web, 5305), pids: daemons, listenerSends: true},
	}
	rounds := dataPlaneRounds
	if s := os.Getenv("WEFT_BENCH_ROUNDS"); s != "" {
		if rounds, err = strconv.Atoi(s); err != nil || rounds < 1 {
			b.Fatalf("WEFT_BENCH_ROUNDS=%q: want a positive count", s)
		}
	}
	profileDataPlane(b, n, rows)
	order := []string{"tunnel", "exit-up", "raw", "tunnel", "exit-down", "plain"}
	var all []dataPlaneRound
	b.ResetTimer()
	for range b.N {
		for r := range rounds {
			round := dataPlaneRound{}
			for i := range order {
				kind := order[(i+r)%len(order)]
				res, err := timedStream(n.ctx, n.lab, rows[kind], nil)
				if err != nil {
					b.Fatalf("round %d, %s: %v", len(all)+1, kind, err)
				}
				round.add(kind, res)
			}
			all = append(all, round)
			b.Logf("round %d: %s", len(all), round)
		}
	}
	b.StopTimer()
	reportDataPlane(b, all, mtu)
}

// profileDataPlane, when $WEFT_BENCH_PERF_DIR is set, runs the rows whose
// processes it counts (plain, tunnel, exit-up, exit-down) once each under
// perf before the measured rounds, which perf's own CPU would disturb.
// perf samples the row's window only, so that the samples are of the
// traffic and not of the processes at rest before it.
func profileDataPlane(b *testing.B, n *labNet, rows map[string]streamSpec) {
	if os.Getenv("WEFT_BENCH_PERF_DIR") == "" {
		return
	}
	for _, kind := range []string{"plain", "tunnel", "exit-up", "exit-down"} {
		res, err := timedStream(n.ctx, n.lab, rows[kind], func() func() {
			return perfRecord(b, kind, rows[kind].pids...)
		})
		b.Logf("profiled %s: %.0f Mbit/s (%.0f MB/cpu-s)", kind, res.mbit, res.mbPerCPU)
		if err != nil {
			b.Fatalf("profiling %s: %v", kind, err)
		}
	}
}

// reportDataPlane reports the medians over the rounds, the spreads and
// the crypto limit for packets of mtu bytes.
func reportDataPlane(b *testing.B, all []dataPlaneRound, mtu int) {
	med := func(f func(r dataPlaneRound) float64) float64 {
		v, _ := medianSpread(all, f)
		return v
	}
	rate := func(kind string) func(dataPlaneRound) float64 {
		return func(r dataPlaneRound) float64 { return r.mean(kind, false) }
	}
	perCPU := func(kind string) func(dataPlaneRound) float64 {
		return func(r dataPlaneRound) float64 { return r.mean(kind, true) }
	}
	ratio := func(f, g func(dataPlaneRound) float64) func(dataPlaneRound) float64 {
		return func(r dataPlaneRound) float64 { return f(r) / g(r) }
	}
	for _, kind := range []string{"raw", "plain", "tunnel", "exit-up", "exit-down"} {
		unit := kind + "-Mbit/s"
		if kind == "plain" {
			unit = "plainwg-Mbit/s"
		}
		b.ReportMetric(med(rate(kind)), unit)
	}
	tun, spread := medianSpread(all, rate("tunnel"))
	b.ReportMetric(100*spread, "tunnel-spread-%")
	tr, trSpread := medianSpread(all, ratio(rate("tunnel"), rate("raw")))
	b.ReportMetric(tr, "tunnel/raw")
	b.ReportMetric(100*trSpread, "tunnel/raw-spread-%")
	b.ReportMetric(med(ratio(rate("tunnel"), rate("plain"))), "tunnel/plainwg")
	b.ReportMetric(med(ratio(rate("exit-up"), rate("tunnel"))), "exit-up/tunnel")
	b.ReportMetric(med(ratio(rate("exit-down"), rate("tunnel"))), "exit-down/tunnel")
	b.ReportMetric(float64(mtu), "tunnel-MTU")
	limit := cryptoLimit(b, mtu, 2*time.Second)
	cpuTun := med(perCPU("tunnel"))
	b.ReportMetric(limit/1e6, "crypto-MB/core-s")
	b.ReportMetric(cpuTun, "tunnel-MB/daemon-cpu-s")
	b.ReportMetric(cpuTun*1e6/limit, "tunnel/crypto")
	b.ReportMetric(med(perCPU("plain")), "plainwg-MB/cpu-s")
	// Per CPU-second of the processes carrying each row (both daemons,
	// or both plain wireguard-go processes): steadier than the rates on
	// a machine shared with other work, since they count only those
	// processes' own CPU.
	b.ReportMetric(med(ratio(perCPU("tunnel"), perCPU("plain"))), "tunnel/plainwg-per-cpu")
	b.ReportMetric(med(perCPU("exit-up")), "exit-up-MB/daemon-cpu-s")
	b.ReportMetric(med(ratio(perCPU("exit-up"), perCPU("tunnel"))), "exit-up/tunnel-per-cpu")
	b.ReportMetric(med(perCPU("exit-down")), "exit-down-MB/daemon-cpu-s")
	b.ReportMetric(med(ratio(perCPU("exit-down"), perCPU("tunnel"))), "exit-down/tunnel-per-cpu")
	b.Logf("%d rounds: tunnel %.0f Mbit/s ±%.0f%%, tunnel/raw %.3f ±%.0f%%", len(all), tun, 100*spread, tr, 100*trSpread)
}

// dataPlaneRound holds one round's results by row kind (the tunnel is
// measured twice per round).
type dataPlaneRound map[string][]rowResult

func (r dataPlaneRound) add(kind string, res rowResult) { r[kind] = append(r[kind], res) }

// mean is the mean rate (Mbit/s) of kind's rows in the round, or with
// perCPU their mean payload MB per CPU-second.
func (r dataPlaneRound) mean(kind string, perCPU bool) float64 {
	var sum float64
	for _, res := range r[kind] {
		if perCPU {
			sum += res.mbPerCPU
		} else {
			sum += res.mbit
		}
	}
	return sum / float64(len(r[kind]))
}

func (r dataPlaneRound) String() string {
	s := ""
	for _, kind := range []string{"raw", "plain", "tunnel", "exit-up", "exit-down"} {
		for _, res := range r[kind] {
			s += fmt.Sprintf("%s %.0f Mbit/s", kind, res.mbit)
			if res.mbPerCPU > 0 {
				s += fmt.Sprintf(" (%.0f MB/cpu-s)", res.mbPerCPU)
			}
			s += "; "
		}
	}
	return s
}

// medianSpread is the median of f over the rounds and the spread: half
// the range over the median.
func medianSpread(all []dataPlaneRound, f func(dataPlaneRound) float64) (median, spread float64) {
	v := make([]float64, len(all))
	for i, r := range all {
		v[i] = f(r)
	}
	slices.Sort(v)
	median = v[len(v)/2]
	if len(v)%2 == 0 {
		median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return median, (v[len(v)-1] - v[0]) / 2 / median
}

// streamSpec is one row's stream: a listener at listen on listenNode, a
// connection to dial from dialNode, and which end sends.
type streamSpec struct {
	listenNode, dialNode string
	listen, dial         netip.AddrPort
	listenerSends        bool
	// pids are the processes whose CPU the row counts (the daemons or
	// the plain wireguard-go pair); none for the raw row.
	pids []int
}

// rowResult is one row: the payload rate over the window, and the payload
// per CPU-second of spec.pids over the same window (0 without pids).
type rowResult struct {
	mbit, mbPerCPU float64
}

// timedStream runs one TCP stream as spec says for rowWarm+rowWindow and
// measures it over the window. inWindow, if not nil, is called when the
// window starts and the function it returns when it ends.
func timedStream(ctx context.Context, lab *netlab.Lab, spec streamSpec, inWindow func() (end func())) (rowResult, error) {
	send, recv, err := connectPair(ctx, lab, spec)
	if err != nil {
		return rowResult{}, err
	}
	deadline := time.Now().Add(rowWarm + rowWindow + 30*time.Second)
	send.SetDeadline(deadline)
	recv.SetDeadline(deadline)
	var got atomic.Int64
	var stopped atomic.Bool
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for !stopped.Load() {
			if _, err := send.Write(buf); err != nil {
				errc <- fmt.Errorf("send: %w", err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for {
			n, err := recv.Read(buf)
			got.Add(int64(n))
			if err != nil {
				errc <- fmt.Errorf("receive: %w", err)
				return
			}
		}
	}()
	defer func() {
		stopped.Store(true)
		send.Close()
		recv.Close()
		wg.Wait()
	}()
	sample := func() (int64, time.Duration, time.Time, error) {
		cpu, err := cpuOf(spec.pids)
		return got.Load(), cpu, time.Now(), err
	}
	var b0, b1 int64
	var c0, c1 time.Duration
	var t0, t1 time.Time
	if err := sleepCtx(ctx, rowWarm); err != nil {
		return rowResult{}, err
	}
	end := func() {}
	if inWindow != nil {
		end = inWindow()
	}
	if b0, c0, t0, err = sample(); err != nil {
		end()
		return rowResult{}, err
	}
	err = sleepCtx(ctx, rowWindow)
	end()
	if err != nil {
		return rowResult{}, err
	}
	if b1, c1, t1, err = sample(); err != nil {
		return rowResult{}, err
	}
	select {
	case err := <-errc:
		return rowResult{}, err
	default:
	}
	res := rowResult{mbit: float64(b1-b0) * 8 / t1.Sub(t0).Seconds() / 1e6}
	if b1 == b0 {
		return res, errors.New("no payload arrived in the window")
	}
	if len(spec.pids) > 0 {
		res.mbPerCPU = float64(b1-b0) / 1e6 / (c1 - c0).Seconds()
	}
	return res, nil
}

// connectPair makes spec's TCP connection and returns its sending and
// receiving ends.
func connectPair(ctx context.Context, lab *netlab.Lab, spec streamSpec) (send, recv net.Conn, err error) {
	ln, err := lab.Node(spec.listenNode).Listen("tcp4", spec.listen.String())
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dc, err := lab.Node(spec.dialNode).DialContext(dctx, "tcp4", spec.dial.String())
	if err != nil {
		return nil, nil, err
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	lc, err := ln.Accept()
	if err != nil {
		dc.Close()
		return nil, nil, err
	}
	if spec.listenerSends {
		return lc, dc, nil
	}
	return dc, lc, nil
}

// cpuOf is the user+system CPU time so far of the processes pids.
func cpuOf(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		c, _, err := procStat(pid)
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// startDataPlaneLab brings up the seed lab with busan-wg and mac-wg
// beside busan and mac (the plain wireguard-go pair, in hosts of their own
// so weft never sees their tunnel as a path), daemons on busan and mac,
// busan offering itself as exit node, and the port forwards the raw and
// plain baselines use. It returns the lab and the plain pair.
func startDataPlaneLab(b *testing.B) (*labNet, plainPair) {
	labtest.SkipUnlessRoot(b)
	lab := labtest.Seed(b, plainWGHosts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	b.Cleanup(cancel)
	// $WEFT_BENCH_DAEMON_ARGS adds flags to both daemons, for comparing
	// settings (--memory-limit) against the same-run baselines.
	daemonArgs := append([]string{"--verbose"}, strings.Fields(os.Getenv("WEFT_BENCH_DAEMON_ARGS"))...)
	tn, err := scenario.Start(ctx, lab, scenario.Options{
		Weft:       labtest.WeftBinary(b),
		Hosts:      []string{"busan", "mac"},
		DaemonArgs: daemonArgs,
		UpArgs:     scenario.ExitNodes("busan"),
	})
	if err != nil {
		b.Fatal(err)
	}
	n := &labNet{t: b, ctx: ctx, lab: lab, tn: tn}
	for _, port := range []uint16{5301} {
		if err := forwardPort(lab, "r-busan", unix.IPPROTO_TCP, port, lab.Node("busan").LANAddr); err != nil {
			b.Fatal(err)
		}
	}
	plain, err := startPlainWGPair(ctx, lab)
	if err != nil {
		b.Fatal(err)
	}
	return n, plain
}

// useExit selects exit (approved) as client's exit node and waits until a
// TCP connection from client to web arrives from exitWAN.
func useExit(b *testing.B, n *labNet, client, exit string, web, exitWAN netip.Addr) {
	ln, err := n.lab.Node("web").Listen("tcp4", netip.AddrPortFrom(web, 0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	err = scenario.WaitFor(n.ctx, 30*time.Second, client+" reaches web through "+exit, func() (bool, error) {
		if _, err := n.tn.CLI(n.ctx, client, "set", "--exit-node", exit); err != nil {
			return false, nil
		}
		c, err := n.lab.Node(client).DialContext(n.ctx, "tcp4", ln.Addr().String())
		if err != nil {
			return false, nil
		}
		defer c.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
		s, err := ln.Accept()
		if err != nil {
			return false, nil
		}
		defer s.Close()
		return s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr() == exitWAN, nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// perfRecord, when $WEFT_BENCH_PERF_DIR names a directory, samples the
// CPU of the whole machine with call graphs (perf record -a -g) into
// DIR/row-N.data until the returned stop is called, and logs the PIDs
// of the row's processes (the daemons, or the plain wireguard-go pair)
// for perf report --pid; without it, it does nothing. The
// whole machine rather than the daemons alone, so the kernel's
// forwarding and NAT work in softirq shows too.
func perfRecord(b *testing.B, row string, pids ...int) (stop func()) {
	dir := os.Getenv("WEFT_BENCH_PERF_DIR")
	if dir == "" {
		return func() {}
	}
	out, err := os.CreateTemp(dir, row+"-*.data")
	if err != nil {
		b.Fatal(err)
	}
	out.Close()
	cmd := exec.Command("perf", "record", "-a", "-g", "-o", out.Name())
	if err := cmd.Start(); err != nil {
		b.Fatalf("perf: %v", err)
	}
	b.Logf("perf record %s: pids %v", out.Name(), pids)
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
}

// tunnelMTU reads the MTU of node's weft0.
func tunnelMTU(b *testing.B, node *netlab.Node) int {
	var mtu int
	err := node.Do(func() error {
		ifc, err := net.InterfaceByName("weft0")
		if err == nil {
			mtu = ifc.MTU
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return mtu
}

// cryptoLimit is the crypto limit for packets of size bytes: payload
// bytes sealed and opened (sealOpen) per CPU-second of the thread doing
// it, measured over about d. Thread CPU time rather than wall time keeps
// the figure honest on a machine the lab's processes share.
func cryptoLimit(b *testing.B, size int, d time.Duration) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	aead, err := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, chacha20poly1305.NonceSize)
	pt, ct, out := make([]byte, size), make([]byte, size+aead.Overhead()), make([]byte, size)
	threadCPU := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, start := threadCPU(), time.Now()
	var packets uint64
	for time.Since(start) < d {
		for range 1000 {
			if err := sealOpen(aead, nonce, pt, ct, out, packets); err != nil {
				b.Fatal(err)
			}
			packets++
		}
	}
	return float64(packets) * float64(size) / (threadCPU() - c0).Seconds()
}

//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
)

// BenchmarkLabDataPlane measures, in one lab run and side by side, one TCP
// stream mac → busan over the raw veths (a port forward on r-busan, the
// same NATs and links), through plain wireguard-go (two processes beside
// them, no weft), through weft's tunnel, and through busan as exit node to
// web in both directions (upload mac → web, download web → mac); and the
// crypto limit on this machine with the tunnel's bytes per daemon
// CPU-second as a fraction of it (docs/benchmarks.md). Each iteration
// measures every row once, one after the other:
//
//	go test -run '^$' -bench LabDataPlane -benchtime 3x ./internal/agent/
func BenchmarkLabDataPlane(b *testing.B) {
	n, plainBusan := startDataPlaneLab(b)
	busanLAN := n.lab.Node("busan").LANAddr
	busanWAN := n.lab.Node("r-busan").WANAddr
	web := n.lab.Node("web").WANAddr
	tunAddr := addr4(n.pair("mac", "busan"))
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if _, err := n.tn.Admin(n.ctx, "routes", "approve", "busan", "exit"); err != nil {
		b.Fatal(err)
	}
	macPID, busanPID := n.tn.Daemon("mac").PID, n.tn.Daemon("busan").PID
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
	var raw, plain, tun, up, down, cpuTun, cpuUp float64
	b.ResetTimer()
	for range b.N {
		// The raw baseline dials r-busan's WAN address, which mac's
		// exit node would carry: the exit rows come last, with the exit
		// node selected only for them.
		if _, err := n.tn.CLI(n.ctx, "mac", "set", "--exit-node="); err != nil {
			b.Fatal(err)
		}
		raw += must(b, "raw")(throughput(n.ctx, n.lab, "mac", "busan", netip.AddrPortFrom(busanLAN, 5301), netip.AddrPortFrom(busanWAN, 5301), 1))
		plain += must(b, "plain wireguard-go")(throughput(n.ctx, n.lab, "mac-wg", "busan-wg", netip.AddrPortFrom(plainBusan, 5302), netip.AddrPortFrom(plainBusan, 5302), 1))
		n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
		c0 := daemonCPU(b, macPID) + daemonCPU(b, busanPID)
		start := time.Now()
		stop := perfRecord(b, "tunnel", macPID, busanPID)
		t := must(b, "tunnel")(throughput(n.ctx, n.lab, "mac", "busan", netip.AddrPortFrom(tunAddr, 5303), netip.AddrPortFrom(tunAddr, 5303), 1))
		el := time.Since(start)
		c1 := daemonCPU(b, macPID) + daemonCPU(b, busanPID)
		stop()
		tun += t
		// Payload bytes per CPU-second of both daemons together: the
		// sender's seal and the receiver's open of every packet.
		cpuTun += t * 1e6 / 8 * el.Seconds() / (c1 - c0).Seconds()
		b.Logf("raw, plain, tunnel: %.0f %.0f %.0f Mbit/s", raw, plain, tun)
		useExit(b, n, "mac", "busan", web, busanWAN)
		stop = perfRecord(b, "exit-up", macPID, busanPID)
		c0, start = daemonCPU(b, macPID)+daemonCPU(b, busanPID), time.Now()
		u := must(b, "exit upload")(throughput(n.ctx, n.lab, "mac", "web", netip.AddrPortFrom(web, 5304), netip.AddrPortFrom(web, 5304), 1))
		el = time.Since(start)
		c1 = daemonCPU(b, macPID) + daemonCPU(b, busanPID)
		stop()
		up += u
		cpuUp += u * 1e6 / 8 * el.Seconds() / (c1 - c0).Seconds()
		stop = perfRecord(b, "exit-down", macPID, busanPID)
		down += must(b, "exit download")(pullThroughput(n.ctx, n.lab, "mac", "web", netip.AddrPortFrom(web, 5305)))
		stop()
	}
	b.StopTimer()
	k := float64(b.N)
	raw, plain, tun, up, down, cpuTun, cpuUp = raw/k, plain/k, tun/k, up/k, down/k, cpuTun/k, cpuUp/k
	limit := cryptoLimit(b, mtu, 2*time.Second)
	b.ReportMetric(raw, "raw-Mbit/s")
	b.ReportMetric(plain, "plainwg-Mbit/s")
	b.ReportMetric(tun, "tunnel-Mbit/s")
	b.ReportMetric(up, "exit-up-Mbit/s")
	b.ReportMetric(down, "exit-down-Mbit/s")
	b.ReportMetric(tun/raw, "tunnel/raw")
	b.ReportMetric(tun/plain, "tunnel/plainwg")
	b.ReportMetric(up/tun, "exit-up/tunnel")
	b.ReportMetric(down/tun, "exit-down/tunnel")
	b.ReportMetric(float64(mtu), "tunnel-MTU")
	b.ReportMetric(limit/1e6, "crypto-MB/core-s")
	b.ReportMetric(cpuTun/1e6, "tunnel-MB/daemon-cpu-s")
	b.ReportMetric(cpuTun/limit, "tunnel/crypto")
	// Per daemon CPU-second, exit upload against the tunnel: steadier than
	// the rates on a machine shared with other work, since both count
	// only the daemons' own CPU.
	b.ReportMetric(cpuUp/1e6, "exit-up-MB/daemon-cpu-s")
	b.ReportMetric(cpuUp/cpuTun, "exit-up/tunnel-per-cpu")
}

// startDataPlaneLab brings up the seed lab with busan-wg and mac-wg
// beside busan and mac (the plain wireguard-go pair, in hosts of their own
// so weft never sees their tunnel as a path), daemons on busan and mac,
// busan offering itself as exit node, and the port forwards the raw and
// plain baselines use. It returns the lab and plain busan-wg's tunnel
// address.
func startDataPlaneLab(b *testing.B) (*labNet, netip.Addr) {
	labtest.SkipUnlessRoot(b)
	lab := labtest.Seed(b, plainWGHosts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	b.Cleanup(cancel)
	tn, err := scenario.Start(ctx, lab, scenario.Options{
		Weft:       labtest.WeftBinary(b),
		Hosts:      []string{"busan", "mac"},
		DaemonArgs: []string{"--verbose"},
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
	plainBusan, err := startPlainWGPair(ctx, lab)
	if err != nil {
		b.Fatal(err)
	}
	return n, plainBusan
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

// pullThroughput is throughput in the other direction: "from" dials a
// listener at addr on "to", which sends benchBytes; the rate in Mbit/s.
func pullThroughput(ctx context.Context, lab *netlab.Lab, from, to string, addr netip.AddrPort) (float64, error) {
	ln, err := lab.Node(to).Listen("tcp4", addr.String())
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		buf := make([]byte, 256<<10)
		for sent := 0; sent < benchBytes; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := lab.Node(from).DialContext(dctx, "tcp4", addr.String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	got, err := io.Copy(io.Discard, c)
	el := time.Since(start)
	if err == nil && got != benchBytes {
		err = fmt.Errorf("received %d bytes, want %d", got, benchBytes)
	}
	if err == nil {
		err = <-errc
	}
	if err != nil {
		return 0, err
	}
	return benchBytes * 8 / el.Seconds() / 1e6, nil
}

// perfRecord, when $WEFT_BENCH_PERF_DIR names a directory, samples the
// CPU of the whole machine with call graphs (perf record -a -g) into
// DIR/row-N.data until the returned stop is called, and logs the
// daemons' PIDs for perf report --pid; without it, it does nothing. The
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
	b.Logf("perf record %s: daemons' pids %v", out.Name(), pids)
	time.Sleep(2 * time.Second) // perf's own start-up, on a loaded machine
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
}

// must turns a (rate, error) pair into the rate, failing b on error.
func must(b *testing.B, what string) func(float64, error) float64 {
	return func(v float64, err error) float64 {
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// daemonCPU is a process's user+system CPU time so far.
func daemonCPU(b *testing.B, pid int) time.Duration {
	c, _, err := procStat(pid)
	if err != nil {
		b.Fatal(err)
	}
	return c
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

// Command relaycompare measures weft's relay against Tailscale's derper
// in the same run on the same machine: each server runs as its own
// process on loopback, the same harness drives both with 1,400-byte
// packets between pairs of clients, and the figure that matters is
// payload delivered per CPU-second of the server process.
//
// It is a module of its own so that weft's go.mod does not carry
// Tailscale's dependencies. Run it from this directory:
//
//	go build -o /tmp/derper tailscale.com/cmd/derper
//	go build -o /tmp/weft ../../cmd/weft
//	go run . -derper /tmp/derper -weft /tmp/weft
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	tskey "tailscale.com/types/key"

	"weft/internal/key"
	"weft/internal/relay"
)

const (
	frame  = 1400 // a full-size WireGuard packet on a 1,500-byte path
	window = 128  // packets in flight per pair, as a TCP flow in a tunnel keeps
)

func main() {
	derperBin := flag.String("derper", "", "path of the derper binary")
	weftBin := flag.String("weft", "", "path of the weft binary")
	pairsList := flag.String("pairs", "1,10", "comma-separated numbers of sender/receiver pairs")
	dur := flag.Duration("duration", 5*time.Second, "length of one measurement")
	rounds := flag.Int("rounds", 3, "measurements per server and pair count (median reported)")
	flag.Parse()
	if *derperBin == "" || *weftBin == "" {
		log.Fatal("relaycompare: -derper and -weft are required")
	}
	var pairs []int
	for _, p := range strings.Split(*pairsList, ",") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 {
			log.Fatalf("relaycompare: -pairs %q: want numbers 1-100", *pairsList)
		}
		pairs = append(pairs, n)
	}
	if *rounds < 1 || *rounds > 20 || *dur <= 0 || *dur > time.Minute {
		log.Fatal("relaycompare: -rounds must be 1-20 and -duration at most 1m")
	}
	fmt.Printf("%-6s %5s %10s %12s %14s\n", "server", "pairs", "Gbit/s", "server CPU", "Gbit/server-cpu-s")
	for _, n := range pairs {
		res := map[string][]result{}
		for range *rounds {
			// Alternate, so drift in the machine's load hits both alike.
			for _, s := range []string{"derper", "weft"} {
				var r result
				var err error
				if s == "derper" {
					r, err = runDerper(*derperBin, n, *dur)
				} else {
					r, err = runWeft(*weftBin, n, *dur)
				}
				if err != nil {
					log.Fatalf("relaycompare: %s, %d pairs: %v", s, n, err)
				}
				res[s] = append(res[s], r)
			}
		}
		d, w := median(res["derper"]), median(res["weft"])
		for _, x := range []struct {
			name string
			r    result
		}{{"derper", d}, {"weft", w}} {
			fmt.Printf("%-6s %5d %10.2f %11.0f%% %14.2f\n", x.name, n, x.r.gbps, x.r.cpuShare*100, x.r.perCPU)
		}
		fmt.Printf("weft/derper, %d pairs: %.2f per server CPU-second, %.2f wall-clock\n", n, w.perCPU/d.perCPU, w.gbps/d.gbps)
	}
}

// result is one measurement.
type result struct {
	gbps     float64 // payload delivered per wall-clock second
	cpuShare float64 // server CPU-seconds per wall-clock second
	perCPU   float64 // Gbit of payload per server CPU-second
}

func median(rs []result) result {
	slices.SortFunc(rs, func(a, b result) int {
		switch {
		case a.perCPU < b.perCPU:
			return -1
		case a.perCPU > b.perCPU:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

// pair is one sender and one receiver, whichever relay they use.
type pair struct {
	send func([]byte) error
	recv func() error
	stop func()
}

// measure runs pairs for dur with a window each and returns what arrived,
// with the server's CPU use over the same time.
func measure(pid int, ps []pair, dur time.Duration) (result, error) {
	var got atomic.Uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 2*len(ps))
	for _, p := range ps {
		slots := make(chan struct{}, window)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				if err := p.recv(); err != nil {
					select {
					case <-stop:
					default:
						errc <- err
					}
					return
				}
				got.Add(1)
				<-slots
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, frame)
			for {
				select {
				case <-stop:
					return
				case slots <- struct{}{}:
				}
				if err := p.send(buf); err != nil {
					select {
					case <-stop: // closed under it at the end
					default:
						errc <- err
					}
					return
				}
			}
		}()
	}
	// Let the connections settle before measuring.
	time.Sleep(500 * time.Millisecond)
	cpu0, err := procCPU(pid)
	if err != nil {
		return result{}, err
	}
	n0, t0 := got.Load(), time.Now()
	time.Sleep(dur)
	n1, el := got.Load(), time.Since(t0)
	cpu1, err := procCPU(pid)
	if err != nil {
		return result{}, err
	}
	close(stop)
	for _, p := range ps {
		p.stop()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return result{}, err
	default:
	}
	bits := float64(n1-n0) * frame * 8
	cpu := (cpu1 - cpu0).Seconds()
	r := result{gbps: bits / el.Seconds() / 1e9, cpuShare: cpu / el.Seconds()}
	if cpu > 0 {
		r.perCPU = bits / cpu / 1e9
	}
	return r, nil
}

// procCPU is a process's user+system CPU time.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer runs argv until the returned stop is called, once it accepts
// TCP on port.
func startServer(port int, argv ...string) (*exec.Cmd, func(), error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if os.Getenv("RELAYCOMPARE_VERBOSE") == "" {
		cmd.Stdout, cmd.Stderr = nil, nil
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return cmd, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("%s did not listen on %d", argv[0], port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runDerper(bin string, n int, dur time.Duration) (result, error) {
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	cmd, stop, err := startServer(port, bin, "-a", fmt.Sprintf("127.0.0.1:%d", port), "-http-port", "-1", "-stun=false")
	if err != nil {
		return result{}, err
	}
	defer stop()
	url := fmt.Sprintf("http://127.0.0.1:%d/derp", port)
	nm := netmon.NewStatic()
	var ps []pair
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	for range n {
		a, b := tskey.NewNode(), tskey.NewNode()
		ca, err := derphttp.NewClient(a, url, func(string, ...any) {}, nm)
		if err != nil {
			return result{}, err
		}
		cb, err := derphttp.NewClient(b, url, func(string, ...any) {}, nm)
		if err != nil {
			return result{}, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = errors.Join(ca.Connect(ctx), cb.Connect(ctx))
		cancel()
		if err != nil {
			return result{}, fmt.Errorf("derp connect: %w", err)
		}
		dst := b.Public()
		ps = append(ps, pair{
			send: func(p []byte) error { return ca.Send(dst, p) },
			recv: func() error {
				for {
					m, err := cb.Recv()
					if err != nil {
						return err
					}
					if _, ok := m.(derp.ReceivedPacket); ok {
						return nil
					}
				}
			},
			stop: func() { ca.Close(); cb.Close() },
		})
	}
	return measure(cmd.Process.Pid, ps, dur)
}

func runWeft(bin string, n int, dur time.Duration) (result, error) {
	var keys []key.NodePrivate
	var allowed keyList
	for range 2 * n {
		k := key.NewNode()
		keys = append(keys, k)
		allowed = append(allowed, k.Public())
	}
	const secret = "relaycompare-secret-relaycompare"
	ctrl := httptest.NewServer(relay.NewAllowListHandler(allowed, secret))
	defer ctrl.Close()
	dir, err := os.MkdirTemp("", "relaycompare")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		return result{}, err
	}
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	cmd, stop, err := startServer(port, bin, "relay", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--server-url", ctrl.URL, "--relay-secret-file", secretFile)
	if err != nil {
		return result{}, err
	}
	defer stop()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	var ps []pair
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	for i := range n {
		ca, err := relay.NewClient(relay.ClientOptions{URLs: []string{url}, NodeKey: keys[2*i]})
		if err != nil {
			return result{}, err
		}
		cb, err := relay.NewClient(relay.ClientOptions{URLs: []string{url}, NodeKey: keys[2*i+1]})
		if err != nil {
			return result{}, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = errors.Join(ca.Connect(ctx), cb.Connect(ctx))
		cancel()
		if err != nil {
			return result{}, fmt.Errorf("relay connect: %w", err)
		}
		dst := keys[2*i+1].Public()
		rctx, rcancel := context.WithCancel(context.Background())
		ps = append(ps, pair{
			send: func(p []byte) error { return ca.Send(dst, p) },
			recv: func() error {
				for {
					m, err := cb.Recv(rctx)
					if err != nil {
						return err
					}
					if _, ok := m.(relay.ReceivedPacket); ok {
						return nil
					}
				}
			},
			stop: func() { rcancel(); ca.Close(); cb.Close() },
		})
	}
	return measure(cmd.Process.Pid, ps, dur)
}

// keyList is a fixed allow list for the weft relay.
type keyList []key.NodePublic

func (l keyList) AllowedNodeKeys(context.Context) ([]key.NodePublic, error) { return l, nil }

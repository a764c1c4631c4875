//go:build unix

package control

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/noiseconn"
	"weft/internal/store"
	"weft/internal/wire"

	"golang.org/x/sync/errgroup"
)

// The fan-out benchmark puts the control server in the benchmark process
// and N simulated nodes in a child process (this test binary again, running
// TestBenchNodesHelper), all over real Noise channels on 127.0.0.1. Keeping
// the nodes out of the server's process makes its heap and CPU figures the
// server's alone. Each iteration is one change: one node sends new
// endpoints, and the child measures until every other node has read the
// delta.
//
//	go test -run '^$' -bench MapFanout ./internal/control                  # 50 nodes
//	WEFT_BENCH_NODES=10000 go test -run '^$' -bench MapFanout -benchtime 20x -timeout 30m ./internal/control

func benchNodes() int {
	if n, err := strconv.Atoi(os.Getenv("WEFT_BENCH_NODES")); err == nil && n > 1 {
		return n
	}
	return 50
}

// benchKeys derives node i's keys from its index, so that the benchmark
// and its child agree on them without passing secrets around.
func benchKeys(i int) (key.MachinePrivate, key.NodePrivate) {
	derive := func(label string) [32]byte {
		k := sha256.Sum256([]byte(fmt.Sprintf("weft-bench-%s-%d", label, i)))
		k[0] &= 248
		k[31] = (k[31] & 127) | 64
		return k
	}
	return key.PrivateFromRaw32[key.MachineKind](derive("machine")), key.PrivateFromRaw32[key.NodeKind](derive("node"))
}

// benchFixture is a server with N connected nodes, kept across the
// benchmark's calls (Go calls it once with b.N=1 first) and closed by
// TestMain.
type benchFixture struct {
	n          int
	dir        string
	st         store.Store
	srv        *Server
	hs         *httptest.Server
	child      *exec.Cmd
	stdin      io.WriteCloser
	lines      *bufio.Scanner
	bytesPerN  float64
	goroutines float64
	setup      time.Duration
	changes    int // changes sent so far: each must be new, across Go's calls
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[int]*benchFixture{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturesMu.Lock()
	for _, f := range fixtures {
		f.close()
	}
	fixturesMu.Unlock()
	closeStoreFixtures()
	os.Exit(code)
}

func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

func newBenchFixture(b *testing.B, n int) *benchFixture {
	start := time.Now()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "weft-bench")
	if err != nil {
		b.Fatal(err)
	}
	f := &benchFixture{n: n, dir: dir}
	f.st, err = store.Open(ctx, filepath.Join(dir, "weft.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	registerAll(b, []store.Store{f.st}, n)
	base := memInUse()
	baseG := runtime.NumGoroutine()
	sk := key.NewMachine()
	f.srv, f.hs = newBenchServer(b, benchServerConfig(f.st, sk))
	f.startChild(b, []string{f.hs.URL}, sk.Public())
	f.bytesPerN = float64(memInUse()-base) / float64(n)
	f.goroutines = float64(runtime.NumGoroutine()-baseG) / float64(n)
	f.setup = time.Since(start)
	return f
}

// benchServerConfig is the server configuration of the fan-out
// benchmarks. One child process reads every node's stream, so during the
// connect storm a stream can wait far longer than a real node would;
// don't count that as a dead node. Nor a handshake or first request that
// waits behind thousands of others on a loaded machine (the defaults, 10
// and 15 s, failed a 10,000-node run at a load average of 20).
func benchServerConfig(st store.Store, sk key.MachinePrivate) Config {
	return Config{Store: st, Key: sk, KeepAlive: time.Hour, RegisterRate: -1,
		WriteTimeout: time.Hour, PreStreamTimeout: time.Hour}
}

// newBenchServer starts a control server with cfg (and no handshake
// timeout, see benchServerConfig) behind an HTTP test server.
func newBenchServer(b *testing.B, cfg Config) (*Server, *httptest.Server) {
	srv, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	srv.noise.HandshakeTimeout = time.Hour
	return srv, httptest.NewServer(srv.Handler())
}

// startChild starts the child of f.n simulated nodes, which spreads them
// over the servers at urls (all with the key serverKey), and waits until
// it says they are ready.
func (f *benchFixture) startChild(b *testing.B, urls []string, serverKey key.MachinePublic) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	f.child = exec.Command(exe, "-test.run=^TestBenchNodesHelper$", "-test.timeout=0")
	f.child.Env = append(os.Environ(), "WEFT_BENCH_HELPER=1", "WEFT_BENCH_NODES="+strconv.Itoa(f.n),
		"WEFT_BENCH_URL="+strings.Join(urls, ","), "WEFT_BENCH_KEY="+serverKey.String())
	f.child.Stderr = os.Stderr
	if f.stdin, err = f.child.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	out, err := f.child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := f.child.Start(); err != nil {
		b.Fatal(err)
	}
	f.lines = bufio.NewScanner(out)
	if _, err := f.expect("ready"); err != nil {
		f.close()
		b.Fatal(err)
	}
}

// expect reads the child's protocol lines until one starting with "BENCH
// word" and returns its remaining fields.
func (f *benchFixture) expect(word string) ([]string, error) {
	for f.lines.Scan() {
		fields := strings.Fields(f.lines.Text())
		if len(fields) >= 2 && fields[0] == "BENCH" {
			if fields[1] == "error" {
				return nil, fmt.Errorf("bench child: %s", strings.Join(fields[2:], " "))
			}
			if fields[1] == word {
				return fields[2:], nil
			}
		}
	}
	return nil, fmt.Errorf("bench child ended before %q: %v", word, f.lines.Err())
}

func (f *benchFixture) close() {
	if f.stdin != nil {
		f.stdin.Close()
	}
	if f.child != nil && f.child.Process != nil {
		done := make(chan struct{})
		go func() { f.child.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			f.child.Process.Kill()
			<-done
		}
	}
	if f.hs != nil {
		f.hs.Close()
	}
	if f.srv != nil {
		f.srv.Close()
	}
	if f.st != nil {
		f.st.Close()
	}
	os.RemoveAll(f.dir)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkMapFanout(b *testing.B) {
	n := benchNodes()
	fixturesMu.Lock()
	f := fixtures[n]
	if f == nil {
		f = newBenchFixture(b, n)
		fixtures[n] = f
		b.Logf("%d nodes connected in %v", n, f.setup.Round(time.Millisecond))
	}
	fixturesMu.Unlock()

	f.measureChanges(b)
	b.ReportMetric(f.bytesPerN/1024, "server-KiB/node")
	b.ReportMetric(f.goroutines, "server-goroutines/node")
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(ru.Maxrss)/1024, "server-peak-RSS-MiB")
}

// measureChanges is the timed part of both fan-out benchmarks: b.N
// changes, each sent to the child and timed until every node has read
// it. It reports the node count, the time to all nodes and the server
// CPU per change.
func (f *benchFixture) measureChanges(b *testing.B) {
	var total time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A change repeating one already sent would cost nothing and
		// reach nobody, so the count goes on across Go's calls.
		f.changes++
		if _, err := fmt.Fprintf(f.stdin, "change %d\n", f.changes); err != nil {
			b.Fatal(err)
		}
		fields, err := f.expect("done")
		if err != nil {
			b.Fatal(err)
		}
		ns, _ := strconv.ParseInt(fields[0], 10, 64)
		total += time.Duration(ns)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(f.n), "nodes")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-all/change")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "server-cpu-ms/change")
}

// TestBenchNodesHelper is BenchmarkMapFanout's child: it connects the
// simulated nodes and follows commands on stdin. It only runs when the
// benchmark starts it.
func TestBenchNodesHelper(t *testing.T) {
	if os.Getenv("WEFT_BENCH_HELPER") == "" {
		t.Skip("runs only as BenchmarkMapFanout's child process")
	}
	if err := benchChild(); err != nil {
		fmt.Printf("BENCH error %v\n", err)
		os.Exit(1)
	}
}

// readBenchMessage reads one message from the server as wire.ReadMessage
// does, except that a full map is skipped rather than kept (full reports
// it, body is nil): at 10,000 nodes a full map is megabytes, and the
// child's thousands of readers each holding one while the server sends
// them slowly took 16 GB and an OOM kill on a loaded machine.
func readBenchMessage(r io.Reader) (typ wire.MsgType, body []byte, full bool, err error) {
	var hdr [5]byte // type, then the body's length (wire's framing)
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, false, err
	}
	typ, n := wire.MsgType(hdr[0]), int64(binary.BigEndian.Uint32(hdr[1:]))
	if n > wire.MaxServerMessage {
		return typ, nil, false, fmt.Errorf("%v of %d bytes", typ, n)
	}
	head := make([]byte, min(n, 64))
	if _, err := io.ReadFull(r, head); err != nil {
		return typ, nil, false, err
	}
	if typ == wire.MsgMapResponse && bytes.Contains(head[:min(len(head), 40)], []byte(`"full":true`)) {
		_, err := io.CopyN(io.Discard, r, n-int64(len(head)))
		return typ, nil, true, err
	}
	body = append(head, make([]byte, n-int64(len(head)))...)
	_, err = io.ReadFull(r, body[len(head):])
	return typ, body, false, err
}

// benchNode is one simulated node in the child.
type benchNode struct {
	conn *noiseconn.Conn
}

func benchChild() error {
	n, _ := strconv.Atoi(os.Getenv("WEFT_BENCH_NODES"))
	// Several servers (BenchmarkMapFanoutStores): node i streams from
	// server i mod len(urls).
	urls := strings.Split(os.Getenv("WEFT_BENCH_URL"), ",")
	serverKey, err := key.ParsePublic[key.MachineKind](os.Getenv("WEFT_BENCH_KEY"))
	if err != nil {
		return err
	}
	var (
		fulls     atomic.Int64
		lastFrame atomic.Int64 // unix nanos of the last frame read
		dropped   atomic.Int64 // streams that ended
		marker    atomic.Pointer[[]byte]
		arrived   atomic.Int64
		target    atomic.Int64
		done      = make(chan time.Time, 1)
	)
	reader := func(c *noiseconn.Conn) {
		for {
			typ, body, full, err := readBenchMessage(c)
			if err != nil {
				dropped.Add(1)
				return
			}
			lastFrame.Store(time.Now().UnixNano())
			if typ != wire.MsgMapResponse {
				continue
			}
			if full {
				fulls.Add(1)
				continue
			}
			if m := marker.Load(); m != nil && bytes.Contains(body, *m) {
				if arrived.Add(1) == target.Load() {
					done <- time.Now()
				}
			}
		}
	}
	nodes := make([]*benchNode, n)
	var g errgroup.Group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			mk, nk := benchKeys(i)
			d := &noiseconn.Dialer{MachineKey: mk, ServerKey: serverKey}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := d.Dial(ctx, urls[i%len(urls)])
			if err != nil {
				return err
			}
			ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%250)}), uint16(1024+i))
			req := &wire.MapRequest{NodeKey: nk.Public(), DiscoKey: key.NewDisco().Public(), Endpoints: []netip.AddrPort{ep}, HomeRegion: 1}
			if err := wire.WriteMessage(c, wire.MsgMapRequest, req); err != nil {
				return err
			}
			nodes[i] = &benchNode{conn: c}
			go reader(c)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	// Settled: every node has its full map and the online deltas of the
	// connect storm have stopped.
	for fulls.Load() < int64(n) || time.Since(time.Unix(0, lastFrame.Load())) < time.Second {
		if d := dropped.Load(); d > 0 {
			return fmt.Errorf("%d streams ended during setup", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println("BENCH ready")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var i int
		if _, err := fmt.Sscanf(in.Text(), "change %d", &i); err != nil {
			return fmt.Errorf("bad command %q", in.Text())
		}
		ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i/60000)}), uint16(1024+i%60000))
		m := []byte(`"` + ep.String() + `"`)
		arrived.Store(0)
		target.Store(int64(n - 1))
		marker.Store(&m)
		eps := []netip.AddrPort{ep}
		start := time.Now()
		if err := wire.WriteMessage(nodes[i%n].conn, wire.MsgUpdate, &wire.Update{Endpoints: &eps, HomeRegion: -1}); err != nil {
			return err
		}
		select {
		case end := <-done:
			fmt.Printf("BENCH done %d\n", end.Sub(start).Nanoseconds())
		case <-time.After(2 * time.Minute):
			if d := dropped.Load(); d > 0 {
				return fmt.Errorf("%d streams ended", d)
			}
			return fmt.Errorf("change %d reached %d of %d nodes", i, arrived.Load(), n-1)
		}
	}
	for _, nd := range nodes {
		nd.conn.Close()
	}
	return nil
}

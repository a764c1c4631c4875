//go:build linux

package netlab_test

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"weft/internal/netlab"
)

func TestWhoamiSeesRouterWAN(t *testing.T) {
	l := upLab(t, netlab.SeedTopology())
	for _, tc := range []struct{ host, router string }{
		{"mac", "r-fukuoka"},
		{"pc", "r-fukuoka"},
		{"busan", "r-busan"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			resp, err := l.Node(tc.host).HTTPClient().Get("http://203.0.113.80/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if got, want := strings.TrimSpace(string(b)), l.Node(tc.router).WANAddr.String(); got != want {
				t.Errorf("whoami from %s = %q; want %s's WAN %s", tc.host, got, tc.router, want)
			}
		})
	}
}

// TestDelayLine checks that a router's delay really is added in both
// directions, and that bulk TCP crosses the delay line intact (offloaded
// frames and partial checksums included).
func TestDelayLine(t *testing.T) {
	const delay = 15 * time.Millisecond
	topo := netlab.SeedTopology()
	topo.SetDelay("r-busan", int(delay/time.Millisecond))
	l := upLab(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctrl := l.Node("ctrl").WANAddr

	t.Run("round trip grows by twice the delay", func(t *testing.T) {
		rtts, err := l.Node("busan").Ping(ctx, ctrl, 3, 10*time.Millisecond, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rtts {
			// The line holds each frame at least delay by a monotonic
			// clock, once each way, so no reply can come sooner.
			if r < 2*delay {
				t.Errorf("ping %d through a %v delay line took %v; want at least %v", i, delay, r, 2*delay)
			}
		}
		// The other home has no delay line: its pings are the baseline
		// that shows the delay comes from the line.
		base, err := l.Node("mac").Ping(ctx, ctrl, 3, 10*time.Millisecond, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("delayed rtts %v, undelayed %v", rtts, base)
	})

	t.Run("bulk TCP crosses intact", func(t *testing.T) {
		data := make([]byte, 512<<10)
		for i := range data {
			data[i] = byte(i*7 + i>>11)
		}
		ln, err := l.Node("ctrl").Listen("tcp4", "203.0.113.10:8080")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				h := sha256.New()
				io.Copy(h, r.Body)
				w.Write(h.Sum(nil))
				return
			}
			w.Write(data)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		want := sha256.Sum256(data)
		c := l.Node("busan").HTTPClient()
		resp, err := c.Get("http://203.0.113.10:8080/")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != int64(len(data)) || string(h.Sum(nil)) != string(want[:]) {
			t.Errorf("download: %d bytes, err %v, hash match %v", n, err, string(h.Sum(nil)) == string(want[:]))
		}
		resp, err = c.Post("http://203.0.113.10:8080/", "application/octet-stream", strings.NewReader(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != string(want[:]) {
			t.Errorf("upload arrived damaged")
		}
	})
}

func TestRateCapInstalled(t *testing.T) {
	topo := netlab.SeedTopology()
	topo.SetRate("r-fukuoka", 20)
	topo.SetDelay("r-fukuoka", 5)
	l := upLab(t, topo)
	for _, tc := range []struct{ node, link string }{{"r-fukuoka", "wan"}, {"internet", "w-r-fukuoka"}} {
		h, err := netns.GetFromName(l.Node(tc.node).NS)
		if err != nil {
			t.Fatal(err)
		}
		nh, err := netlink.NewHandleAt(h)
		if err != nil {
			t.Fatal(err)
		}
		link, err := nh.LinkByName(tc.link)
		if err != nil {
			t.Fatal(err)
		}
		qs, err := nh.QdiscList(link)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, q := range qs {
			if tbf, ok := q.(*netlink.Tbf); ok && tbf.Rate == 20_000_000/8 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s/%s: no 20 Mbit/s token bucket among %v", tc.node, tc.link, qs)
		}
		nh.Close()
		h.Close()
	}
}

func TestProcesses(t *testing.T) {
	l := upLab(t, netlab.SeedTopology())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("exec runs in the node's namespace", func(t *testing.T) {
		for _, tc := range []struct {
			node, has, hasNot string
		}{
			{"mac", "eth0:", "br0:"},
			{"internet", "br0:", "eth0:"},
			{"r-busan", "wan:", "br0:"},
		} {
			out, err := l.Node(tc.node).Exec(ctx, "cat", "/proc/self/net/dev")
			if err != nil {
				t.Fatalf("%s: %v: %s", tc.node, err, out)
			}
			if !strings.Contains(string(out), tc.has) || strings.Contains(string(out), tc.hasNot) {
				t.Errorf("%s sees interfaces:\n%s\nwant %q and not %q", tc.node, out, tc.has, tc.hasNot)
			}
		}
	})
	t.Run("exec reports failure", func(t *testing.T) {
		if _, err := l.Node("pc").Exec(ctx, "sh", "-c", "exit 3"); err == nil {
			t.Error("exit 3: want an error")
		}
	})
	t.Run("start logs and kill", func(t *testing.T) {
		p, err := l.Node("ctrl").Start(ctx, "sleeper", "sh", "-c", "echo started; exec sleep 60")
		if err != nil {
			t.Fatal(err)
		}
		for !strings.Contains(p.Logs(), "started") {
			select {
			case <-ctx.Done():
				t.Fatalf("no output; logs: %s", p.Logs())
			case <-time.After(10 * time.Millisecond):
			}
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err == nil {
			t.Error("killed process exited cleanly")
		}
		if syscall.Kill(p.PID, 0) == nil {
			t.Errorf("process %d still exists after Kill", p.PID)
		}
	})
}

// TestDownAndStale checks that Down leaves nothing behind, and that Up
// first removes what a crashed run with the same prefix left.
func TestDownAndStale(t *testing.T) {
	cfg := labConfig(t, "stale")
	topo := netlab.SeedTopology()
	topo.SetDelay("r-busan", 1)
	ctx := context.Background()
	crashed, err := netlab.Up(ctx, cfg, topo)
	if err != nil {
		t.Fatal(err)
	}
	oldPIDs := pids(crashed)
	// A second Up without Down is what a restart after a crash does.
	l, err := netlab.Up(ctx, cfg, topo)
	if err != nil {
		crashed.Down(ctx)
		t.Fatal(err)
	}
	for _, p := range oldPIDs {
		if syscall.Kill(p, 0) == nil && alive(p) {
			t.Errorf("process %d of the crashed run survived", p)
		}
	}
	if _, err := l.Node("busan").HTTPClient().Get("http://203.0.113.80/"); err != nil {
		t.Errorf("new lab does not work: %v", err)
	}
	newPIDs := pids(l)
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := netlab.ListNamespaces(cfg.Prefix); len(left) > 0 {
		t.Errorf("namespaces left after Down: %v", left)
	}
	for _, p := range newPIDs {
		if alive(p) {
			t.Errorf("process %d left after Down", p)
		}
	}
	if _, err := netlab.Open(cfg.Dir, nil); err != netlab.ErrNoLab {
		t.Errorf("Open after Down: %v; want ErrNoLab", err)
	}
	if err := l.Down(ctx); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func pids(l *netlab.Lab) []int {
	var out []int
	for _, p := range l.Processes() {
		out = append(out, p.PID)
	}
	return out
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestOpenDown takes a lab down the way `weft lab down` does: from its
// state file alone, stopping its processes by their recorded PIDs.
func TestOpenDown(t *testing.T) {
	cfg := labConfig(t, "open")
	topo := netlab.SeedTopology()
	topo.SetDelay("r-fukuoka", 1)
	ctx := context.Background()
	orig, err := netlab.Up(ctx, cfg, topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { orig.Down(ctx) })
	l, err := netlab.Open(cfg.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(l.Processes()), 2; got != want { // delay line, whoami
		t.Fatalf("opened lab has %d processes; want %d", got, want)
	}
	if n := l.Node("mac"); n == nil || n.LANAddr != orig.Node("mac").LANAddr {
		t.Fatalf("opened lab's mac = %+v", n)
	}
	out, err := l.Node("mac").Exec(ctx, "cat", "/proc/self/net/dev")
	if err != nil || !strings.Contains(string(out), "eth0:") {
		t.Fatalf("exec on opened lab: %v %s", err, out)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range orig.Processes() {
		if err := p.Wait(); err != nil && alive(p.PID) {
			t.Errorf("%s still runs", p.Name)
		}
	}
	if left, _ := netlab.ListNamespaces(cfg.Prefix); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}

// TestUpCancelled is Ctrl-C during `weft lab up`: Up stops and removes
// what it built.
func TestUpCancelled(t *testing.T) {
	cfg := labConfig(t, "cancel")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := netlab.Up(ctx, cfg, netlab.SeedTopology()); err == nil {
		t.Fatal("Up with a cancelled context succeeded")
	}
	if left, _ := netlab.ListNamespaces(cfg.Prefix); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}

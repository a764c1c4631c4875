//go:build linux

package browsertest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/netutil"
	"weft/internal/scenario"
)

// forward relays TCP connections from a loopback port of the test
// process to addr as dialed from inside node's namespace, so the browser
// (in the test's namespace) reaches a server that lives in the lab. Only
// the browser's HTTP to the control server crosses; the tailnet's own
// traffic stays in the lab. It returns the loopback address and stops at
// the end of the test.
func forward(t testing.TB, node *netlab.Node, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		netutil.ServeConns(ctx, ln, func(ctx context.Context, c net.Conn) {
			defer c.Close()
			up, err := node.DialContext(ctx, "tcp", addr)
			if err != nil {
				return
			}
			defer up.Close()
			stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
			defer stop()
			copied := make(chan struct{})
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(copied) }()
			io.Copy(c, up)
			<-copied
		})
	}()
	return ln.Addr().String()
}

// TestBrowserLabExitNode runs the seed tailnet in a lab (busan offering
// itself as exit node and mac, both joined with a pre-auth key), signs in
// to its console in Chromium, approves pc, which waits in an interactive
// `weft up` without a key, so that pc joins; sees the three nodes online,
// sees busan's health plots drawn from the samples it reported, approves
// busan as exit node with the console's button, and sees the change reach
// mac: its `weft status --json` lists busan's exit routes; renames mac in
// the console and sees busan's `weft status --json` name the peer anew.
func TestBrowserLabExitNode(t *testing.T) {
	chromiumPath(t)
	labtest.SkipUnlessRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lab := labtest.Seed(t)
	tn, err := scenario.Start(ctx, lab, scenario.Options{
		Weft:       labtest.WeftBinary(t),
		Hosts:      []string{"busan", "mac"},
		DaemonArgs: []string{"--health-interval", "1s"},
		UpArgs:     scenario.ExitNodes("busan"),
	})
	if err != nil {
		t.Fatal(err)
	}
	su, err := url.Parse(tn.ServerURL)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + forward(t, lab.Node("ctrl"), su.Host)
	link, err := tn.Admin(ctx, "console-link")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	signIn(t, b, string(link), base)

	step(t, "interactive weft up approved in the console", func(t *testing.T) {
		if err := tn.StartDaemon(ctx, "pc"); err != nil {
			t.Fatal(err)
		}
		up, err := lab.Node("pc").Start(ctx, "up", labtest.WeftBinary(t), "--socket", tn.Socket("pc"),
			"up", "--server", tn.ServerURL, "--hostname", "pc")
		if err != nil {
			t.Fatal(err)
		}
		codeRE := regexp.MustCompile(`/login/node/([A-Za-z0-9]+)`)
		var code string
		err = scenario.WaitFor(ctx, 20*time.Second, "weft up on pc to print its login URL", func() (bool, error) {
			if m := codeRE.FindStringSubmatch(up.Logs()); m != nil {
				code = m[1]
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, up.Logs())
		}
		row := `#logins tr[data-code="` + code + `"]`
		do(t, b, "approve pc's login",
			chromedp.Navigate(base+"/admin/logins"),
			chromedp.WaitVisible(chromedp.CSS(row)),
		)
		if got := get(t, b, "read the machine", chromedp.Text(chromedp.CSS(row+" td.name"))); got != "pc" {
			t.Fatalf("the waiting machine with pc's code is %q", got)
		}
		screenshot(t, b, "logins")
		do(t, b, "press Approve",
			chromedp.SetValue(chromedp.CSS(row+" select"), "alice"),
			chromedp.Click(chromedp.CSS(row+" button.approve")),
			chromedp.WaitVisible(chromedp.ID("notice")),
		)
		err = scenario.WaitFor(ctx, 30*time.Second, "weft up on pc to finish", func() (bool, error) { return up.Exited(), nil })
		if err != nil || up.Wait() != nil || !strings.Contains(up.Logs(), "joining as alice") {
			t.Fatalf("weft up on pc after the approval: %v\n%s", err, up.Logs())
		}
	})

	step(t, "three nodes online", func(t *testing.T) {
		var online []string
		err := scenario.WaitFor(ctx, 30*time.Second, "the nodes page to show busan, mac and pc online", func() (bool, error) {
			open(t, b, base+"/admin/")
			online = get(t, b, "read the nodes", chromedp.Evaluate[[]string](
				`Array.from(document.querySelectorAll("#nodes tr[data-node]")).filter(r => r.querySelector("td.state.online")).map(r => r.dataset.node)`))
			slices.Sort(online)
			return slices.Equal(online, []string{"busan", "mac", "pc"}), nil
		})
		if err != nil {
			t.Fatalf("%v; online: %v", err, online)
		}
		if page := html(t, b); !strings.Contains(page, "1 awaiting approval") {
			t.Fatalf("busan's exit routes are not shown awaiting approval:\n%s", page)
		}
		screenshot(t, b, "nodes")
	})

	step(t, "health plots", func(t *testing.T) {
		// Samples every second reach the server in batches of 12; wait
		// for two batches, so the plots have lines, not points.
		var charts string
		var samples int
		err := scenario.WaitFor(ctx, 90*time.Second, "busan's health plots over 20 samples", func() (bool, error) {
			open(t, b, base+"/admin/nodes/busan")
			do(t, b, "wait for the plots", chromedp.WaitReady(chromedp.CSS("#health[data-charts]")))
			charts = get(t, b, "count the plots", chromedp.Evaluate[string](`document.getElementById("health").dataset.charts`))
			samples = get(t, b, "count the samples", chromedp.Evaluate[int](`Number(document.getElementById("health").dataset.samples || 0)`))
			n := get(t, b, "count the canvases", chromedp.Evaluate[int](`document.querySelectorAll("#health figure.chart canvas").length`))
			return charts != "0" && charts != "error" && n > 0 && samples >= 20, nil
		})
		if err != nil {
			t.Fatalf("%v; data-charts=%q data-samples=%d", err, charts, samples)
		}
		ids := get(t, b, "list the plots", chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("#health figure.chart")).map(f => f.id)`))
		if !slices.Contains(ids, "chart-peer-rtt") {
			t.Fatalf("plots %v: no round trip to peers", ids)
		}
		screenshot(t, b, "node")
	})

	step(t, "approve the exit node", func(t *testing.T) {
		do(t, b, "press Approve",
			chromedp.Click(chromedp.CSS(`#routes tr[data-prefix="0.0.0.0/0"] button.approve`)),
			chromedp.WaitVisible(chromedp.CSS(`#routes tr[data-prefix="0.0.0.0/0"] button.reject`)),
		)
		var routes []string
		err := scenario.WaitFor(ctx, 30*time.Second, "mac's weft status to list busan's exit routes", func() (bool, error) {
			out, err := tn.CLI(ctx, "mac", "status", "--json")
			if err != nil {
				return false, err
			}
			var st struct {
				Peers []struct {
					Name   string   `json:"name"`
					Routes []string `json:"routes"`
				} `json:"peers"`
			}
			if err := json.Unmarshal(out, &st); err != nil {
				return false, err
			}
			for _, p := range st.Peers {
				if p.Name == "busan" {
					routes = p.Routes
				}
			}
			return slices.Contains(routes, "0.0.0.0/0") && slices.Contains(routes, "::/0"), nil
		})
		if err != nil {
			t.Fatalf("%v; busan's routes on mac: %v", err, routes)
		}
		out, err := tn.Admin(ctx, "audit")
		if err != nil || !strings.Contains(string(out), "routes.approve") || !strings.Contains(string(out), "console session") {
			t.Fatalf("weft admin audit does not show the console's approval: %v\n%s", err, out)
		}
	})

	step(t, "rename a node", func(t *testing.T) {
		do(t, b, "rename mac to studio",
			chromedp.Navigate(base+"/admin/nodes/mac"),
			chromedp.WaitVisible(chromedp.ID("renameform")),
			chromedp.SetValue(chromedp.ID("newname"), "studio"),
			chromedp.Click(chromedp.ID("rename")),
			chromedp.WaitVisible(chromedp.ID("notice")),
		)
		if h := get(t, b, "read the title", chromedp.Text(chromedp.CSS("h1"))); h != "studio" {
			t.Fatalf("after the rename the node page is titled %q", h)
		}
		var peers []string
		err := scenario.WaitFor(ctx, 30*time.Second, "busan's weft status to name its peer studio", func() (bool, error) {
			out, err := tn.CLI(ctx, "busan", "status", "--json")
			if err != nil {
				return false, err
			}
			var st struct {
				Peers []struct {
					Name string `json:"name"`
				} `json:"peers"`
			}
			if err := json.Unmarshal(out, &st); err != nil {
				return false, err
			}
			peers = peers[:0]
			for _, p := range st.Peers {
				peers = append(peers, p.Name)
			}
			return slices.Contains(peers, "studio") && !slices.Contains(peers, "mac"), nil
		})
		if err != nil {
			t.Fatalf("%v; busan's peers: %v", err, peers)
		}
	})
}

//go:build linux

// Package demo runs the seed story on one machine: a lab with two home
// NATs (Busan and Fukuoka), a control server, three nodes, Busan as exit
// node for the Mac, and a readable report of what a user would check. It is
// what `weft demo` runs, and every step is a real weft process in a
// network namespace.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"weft/internal/netlab"
	"weft/internal/scenario"
)

// Options configure Run.
type Options struct {
	// Weft is the weft binary every lab process runs. Required.
	Weft string
	// Out receives the report.
	Out io.Writer
	// Keep leaves the lab running after the report.
	Keep bool
	// LabName names the lab (its namespaces start with "wl-<name>-").
	LabName string
	// Throughput is how long the tunnel throughput is measured; 10s if
	// zero.
	Throughput time.Duration
	// Logger receives debug progress; nil discards it.
	Logger *slog.Logger
}

// StepError says which demo step failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("demo step %q failed: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// peerStatus is the part of `weft status --json` the demo reads
// (docs/status.md).
type peerStatus struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	OS        string   `json:"os"`
	Online    bool     `json:"online"`
	Path      struct {
		Kind        string `json:"kind"`
		Endpoint    string `json:"endpoint"`
		RelayRegion int    `json:"relay_region"`
	} `json:"path"`
	RTTMS float64 `json:"rtt_ms"`
}

type status struct {
	Self  peerStatus   `json:"self"`
	Peers []peerStatus `json:"peers"`
}

type runner struct {
	opts Options
	out  io.Writer
	lab  *netlab.Lab
	tn   *scenario.Tailnet
	n    int
}

// Hosts of the seed story and the roles the demo gives them.
var roles = map[string]string{"busan": "exit node (Korean IP)", "mac": "client", "pc": "client"}

const stepCount = 9

// Run builds the lab, runs the story and prints the report. Unless
// Options.Keep is set, everything is torn down before it returns, also on
// failure.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.Weft == "" {
		return errors.New("demo: Options.Weft is required")
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.LabName == "" {
		opts.LabName = "demo"
	}
	if opts.Throughput == 0 {
		opts.Throughput = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &runner{opts: opts, out: opts.Out}
	fmt.Fprintln(r.out, "weft demo: Busan laptop as exit node for a Mac and a PC in Fukuoka, all behind home NATs")
	fmt.Fprintln(r.out)
	defer func() {
		if r.lab == nil {
			return
		}
		if opts.Keep && err == nil {
			fmt.Fprintf(r.out, "\nThe lab is still up. Enter a node with:\n  weft lab --name %s exec mac -- bash\n"+
				"Its weft CLI: weft --socket %s status\nTear it down with: weft lab --name %s down\n",
				opts.LabName, r.tn.Socket("mac"), opts.LabName)
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if derr := r.lab.Down(dctx); derr != nil && err == nil {
			err = &StepError{"tear down", derr}
		}
	}()

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"build the lab", r.buildLab},
		{"start the control server and three nodes", r.startTailnet},
		{"approve busan as exit node", r.approveExit},
		{"wait for direct paths", r.waitDirect},
		{"node table", r.nodeTable},
		{"ping between the nodes", r.pings},
		{"netcheck from busan", r.netcheck},
		{"address seen by web, without and with the exit node", r.egress},
		{"throughput through the tunnel", r.throughput},
	}
	for _, s := range steps {
		r.n++
		fmt.Fprintf(r.out, "[%d/%d] %s\n", r.n, stepCount, s.name)
		t0 := time.Now()
		if err := s.fn(ctx); err != nil {
			fmt.Fprintf(r.out, "      FAILED: %v\n", err)
			return &StepError{s.name, err}
		}
		opts.Logger.Debug("demo step done", "step", s.name, "took", time.Since(t0))
	}
	fmt.Fprintln(r.out, "\nAll steps passed.")
	return nil
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.out, "      "+format+"\n", args...)
}

func (r *runner) buildLab(ctx context.Context) error {
	topo := netlab.SeedTopology()
	// 12 ms and 13 ms each way on the two home links: about the seed's
	// 50 ms round trip between Busan and Fukuoka.
	topo.SetDelay("r-busan", 12)
	topo.SetDelay("r-fukuoka", 13)
	dir := filepath.Join("/run/weft-lab", r.opts.LabName)
	cfg := netlab.Config{
		Prefix: "wl-" + r.opts.LabName + "-",
		Dir:    dir,
		Helper: []string{r.opts.Weft, "lab"},
		Logger: r.opts.Logger,
	}
	lab, err := netlab.Up(ctx, cfg, topo)
	if err != nil {
		return err
	}
	r.lab = lab
	for _, rt := range []string{"r-busan", "r-fukuoka"} {
		n := lab.Node(rt)
		r.printf("%-10s WAN %-14s LAN %-16s %s NAT, +%dms each way", rt, n.WANAddr, n.LAN, n.NAT, n.DelayMS)
	}
	r.printf("%-10s %s (control server), web %s (says which address it sees)", "ctrl", lab.Node("ctrl").WANAddr, lab.Node("web").WANAddr)
	return nil
}

func (r *runner) startTailnet(ctx context.Context) error {
	tn, err := scenario.Start(ctx, r.lab, scenario.Options{
		Weft:   r.opts.Weft,
		Hosts:  []string{"busan", "mac", "pc"},
		Logger: r.opts.Logger,
		UpArgs: scenario.ExitNodes("busan"),
	})
	if tn != nil {
		r.tn = tn
	}
	if err != nil {
		return err
	}
	r.printf("control server %s; nodes busan, mac, pc joined with a pre-auth key", tn.ServerURL)
	return nil
}

func (r *runner) approveExit(ctx context.Context) error {
	if _, err := r.tn.Admin(ctx, "routes", "approve", "busan", "exit"); err != nil {
		return err
	}
	out, err := r.tn.Admin(ctx, "routes", "list")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		r.printf("%s", l)
	}
	return nil
}

func (r *runner) status(ctx context.Context, host string) (*status, error) {
	out, err := r.tn.CLI(ctx, host, "status", "--json")
	if err != nil {
		return nil, err
	}
	var st status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("weft status --json on %s: %w", host, err)
	}
	return &st, nil
}

// waitDirect pings every pair until direct, which is what a user waits
// for. Pairs that stay on the relay are reported, not failed: the relay is
// weft working as designed.
func (r *runner) waitDirect(ctx context.Context) error {
	pairs := [][2]string{{"mac", "busan"}, {"pc", "busan"}, {"mac", "pc"}}
	for _, p := range pairs {
		out, err := r.tn.CLI(ctx, p[0], "ping", "--until-direct", "-c", "20", p[1])
		last := lastLine(string(out))
		if err != nil && last == "" {
			return err
		}
		r.printf("%s → %s: %s", p[0], p[1], last)
	}
	return nil
}

func (r *runner) nodeTable(ctx context.Context) error {
	fromMac, err := r.status(ctx, "mac")
	if err != nil {
		return err
	}
	fromBusan, err := r.status(ctx, "busan")
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "      NODE\tROLE\tOS\tTAILNET ADDRESS\tCONNECTION (seen from mac)")
	row := func(p peerStatus, conn string) {
		fmt.Fprintf(tw, "      %s\t%s\t%s\t%s\t%s\n", p.Name, roles[p.Name], p.OS, firstV4(p.Addresses), conn)
	}
	row(fromMac.Self, "(self)")
	for _, p := range fromMac.Peers {
		row(p, describePath(p))
	}
	tw.Flush()
	for _, p := range fromBusan.Peers {
		if p.Name == "mac" {
			r.printf("busan sees mac %s", describePath(p))
		}
	}
	return nil
}

func (r *runner) pings(ctx context.Context) error {
	for _, p := range [][2]string{{"mac", "busan"}, {"pc", "busan"}, {"mac", "pc"}} {
		out, err := r.tn.CLI(ctx, p[0], "ping", "-c", "3", p[1])
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			r.printf("%s: %s", p[0], l)
		}
	}
	return nil
}

func (r *runner) netcheck(ctx context.Context) error {
	out, err := r.lab.Node("busan").Exec(ctx, r.opts.Weft, "netcheck", "--server", r.tn.ServerURL)
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		r.printf("%s", l)
	}
	return nil
}

func (r *runner) egress(ctx context.Context) error {
	before, err := scenario.Whoami(ctx, r.lab, "mac")
	if err != nil {
		return fmt.Errorf("asking web without exit node: %w", err)
	}
	fukuoka, busan := r.lab.Node("r-fukuoka").WANAddr, r.lab.Node("r-busan").WANAddr
	r.printf("without exit node: web sees mac as %s (r-fukuoka's WAN: %v)", before, before == fukuoka)
	if before != fukuoka {
		return fmt.Errorf("web saw %s without exit node, want r-fukuoka's %s", before, fukuoka)
	}
	if _, err := r.tn.CLI(ctx, "mac", "set", "--exit-node", "busan"); err != nil {
		return err
	}
	var after netip.Addr
	err = scenario.WaitFor(ctx, 20*time.Second, "traffic to leave through busan", func() (bool, error) {
		a, err := scenario.Whoami(ctx, r.lab, "mac")
		if err != nil {
			return false, nil
		}
		after = a
		return a == busan, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last seen: %v)", err, after)
	}
	r.printf("with exit node busan: web sees mac as %s (r-busan's WAN: the Korean IP)", after)
	if _, err := r.tn.CLI(ctx, "mac", "set", "--exit-node="); err != nil {
		return err
	}
	back, err := scenario.Whoami(ctx, r.lab, "mac")
	if err != nil {
		return fmt.Errorf("asking web after clearing the exit node: %w", err)
	}
	r.printf("exit node cleared: web sees mac as %s again", back)
	if back != fukuoka {
		return fmt.Errorf("web saw %s after clearing the exit node, want %s", back, fukuoka)
	}
	return nil
}

func (r *runner) throughput(ctx context.Context) error {
	st, err := r.status(ctx, "busan")
	if err != nil {
		return err
	}
	dst := firstV4(st.Self.Addresses)
	if dst == "" {
		return errors.New("busan has no tailnet IPv4 address")
	}
	n, d, err := MeasureTCP(ctx, r.lab.Node("busan"), r.lab.Node("mac"), dst, r.opts.Throughput)
	if err != nil {
		return err
	}
	r.printf("mac → busan through the tunnel: %.1f Mbit/s (%d MB in %.1fs, one TCP stream)",
		float64(n)*8/d.Seconds()/1e6, n>>20, d.Seconds())
	return nil
}

// MeasureTCP sends as much as it can in d over one TCP connection from
// client to server's address dst and returns the bytes the server
// received and the time taken.
func MeasureTCP(ctx context.Context, server, client *netlab.Node, dst string, d time.Duration) (int64, time.Duration, error) {
	return MeasureTCPDial(ctx, server, dst, dst, client.DialContext, d)
}

// MeasureTCPDial is MeasureTCP for a listener on server at listenAddr
// that the sender reaches as dstHost, on the listener's port, through
// dial: a SOCKS proxy, or a node that maps dstHost to the server's
// loopback.
func MeasureTCPDial(ctx context.Context, server *netlab.Node, listenAddr, dstHost string,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), d time.Duration) (int64, time.Duration, error) {
	ln, err := server.Listen("tcp4", net.JoinHostPort(listenAddr, "0"))
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := dial(dctx, "tcp4", net.JoinHostPort(dstHost, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
	cancel()
	if err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 128<<10)
	start := time.Now()
	_ = c.SetWriteDeadline(start.Add(d))
	for time.Since(start) < d && ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			c.Close()
			return 0, 0, err
		}
	}
	c.Close()
	n := <-got
	return n, time.Since(start), nil
}

func describePath(p peerStatus) string {
	switch p.Path.Kind {
	case "direct":
		return fmt.Sprintf("direct %s, %.0fms", p.Path.Endpoint, p.RTTMS)
	case "relay":
		return fmt.Sprintf("relay (region %d)", p.Path.RelayRegion)
	default:
		if !p.Online {
			return "offline"
		}
		return "idle"
	}
}

func firstV4(addrs []string) string {
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is4() {
			return p.Addr().String()
		}
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
			return ip.String()
		}
	}
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

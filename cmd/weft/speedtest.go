package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/localapi"
	"weft/internal/speedtest"
)

type speedtestOptions struct {
	peer          string
	duration      time.Duration
	reverse, both bool
	asJSON        bool
	port          uint16
}

func newSpeedtestCmd(g *globals) *cobra.Command {
	var o speedtestOptions
	cmd := &cobra.Command{
		Use:   "speedtest PEER",
		Short: "Measure throughput through the tunnel to a peer, both ways",
		Long: "Measure throughput through the tunnel between this node and PEER (a name or\n" +
			"tailnet address), without any tool on the other side: the peer's daemon\n" +
			"serves the test on its tailnet address to tailnet peers only. By default\n" +
			"this node sends for --time, then the peer does; --reverse measures only the\n" +
			"peer sending. Prints Mbit/s per direction, the path and the retransmits seen.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.peer = args[0]
			if o.duration <= 0 || o.duration > speedtest.MaxDuration {
				return usageError{fmt.Errorf("speedtest: --time %v: want more than 0 and at most %v", o.duration, speedtest.MaxDuration)}
			}
			if o.reverse && o.both {
				return usageError{errors.New("speedtest: --reverse and --both exclude each other")}
			}
			return runSpeedtest(cmd.Context(), g, o)
		},
	}
	cmd.Flags().DurationVar(&o.duration, "time", 10*time.Second, "how long each direction runs")
	cmd.Flags().BoolVar(&o.reverse, "reverse", false, "measure only the peer sending to this node")
	cmd.Flags().BoolVar(&o.both, "both", false, "measure both directions (the default)")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print as JSON")
	cmd.Flags().Uint16Var(&o.port, "port", speedtest.DefaultPort, "the peer's speed test port (its daemon's --speedtest-port)")
	return cmd
}

// speedtestReport is what `weft speedtest --json` prints.
type speedtestReport struct {
	Peer    string `json:"peer"`
	Address string `json:"address"`
	// Path is "direct" or "relay": how the peer's packets travelled at
	// the end of the test.
	Path      string   `json:"path"`
	Seconds   float64  `json:"seconds"`
	UpMbps    *float64 `json:"up_mbps,omitempty"`
	DownMbps  *float64 `json:"down_mbps,omitempty"`
	UpBytes   *int64   `json:"up_bytes,omitempty"`
	DownBytes *int64   `json:"down_bytes,omitempty"`
	// UpRetransmits are the TCP segments this node sent again while
	// sending (Linux only); the peer's are not known here.
	UpRetransmits *int64 `json:"up_retransmits,omitempty"`
}

func runSpeedtest(ctx context.Context, g *globals, o speedtestOptions) error {
	c := &localapi.Client{Socket: g.socket}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	peer, addr, err := speedtestPeer(st, o.peer)
	if err != nil {
		return err
	}
	target := net.JoinHostPort(addr.String(), strconv.Itoa(int(o.port)))
	rep := speedtestReport{Peer: peer.Name, Address: addr.String(), Seconds: o.duration.Seconds()}
	dirs := []speedtest.Direction{speedtest.Up, speedtest.Down}
	if o.reverse {
		dirs = dirs[1:]
	}
	dial := (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	for _, dir := range dirs {
		res, err := speedtest.Run(ctx, dial, target, speedtest.Request{Dir: dir, Duration: o.duration})
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Op == "dial" {
				return fmt.Errorf("cannot reach %s's speed test at %s (%v): is its daemon running with a data plane, and its --speedtest-port %d?", peer.Name, target, err, o.port)
			}
			return fmt.Errorf("speed test with %s, %s: %w", peer.Name, dir, err)
		}
		mbps, n, rt := res.Mbps(), res.Bytes, res.Retransmits
		if dir == speedtest.Up {
			rep.UpMbps, rep.UpBytes = &mbps, &n
			if rt >= 0 {
				rep.UpRetransmits = &rt
			}
		} else {
			rep.DownMbps, rep.DownBytes = &mbps, &n
		}
	}
	rep.Path = speedtestPath(ctx, c, peer)
	if o.asJSON {
		return writeJSON(g.stdout, rep)
	}
	printSpeedtest(g.stdout, rep)
	return nil
}

// speedtestPeer finds the peer to test and its tailnet IPv4 address; an
// offline peer is an error that says so.
func speedtestPeer(st *localapi.Status, name string) (*localapi.PeerStatus, netip.Addr, error) {
	if st.BackendState != localapi.StateRunning && st.BackendState != localapi.StateStarting {
		return nil, netip.Addr{}, fmt.Errorf("this node is %s: run `weft up` first", st.BackendState)
	}
	for _, p := range st.Peers {
		if p.Node == nil || !p.Matches(name) {
			continue
		}
		if !p.Online {
			last := ""
			if !p.LastSeen.IsZero() {
				last = " (last seen " + p.LastSeen.Local().Format(time.DateTime) + ")"
			}
			return nil, netip.Addr{}, fmt.Errorf("%s is offline%s: a speed test needs its daemon running; see `weft status`", p.Name, last)
		}
		for _, a := range p.Addresses {
			if a.Addr().Is4() {
				return p, a.Addr(), nil
			}
		}
		return nil, netip.Addr{}, fmt.Errorf("%s has no tailnet IPv4 address", p.Name)
	}
	return nil, netip.Addr{}, fmt.Errorf("no peer %q in the tailnet: see `weft status` for names and addresses", name)
}

// speedtestPath is how the peer's packets travel now: a disco ping's
// path, which the test's traffic has just made current.
func speedtestPath(ctx context.Context, c *localapi.Client, peer *localapi.PeerStatus) string {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if res, err := c.Ping(pctx, localapi.PingRequest{Peer: peer.Name}); err == nil && res.Path.Kind != localapi.PathNone {
		return res.Path.Kind
	}
	if st, err := c.Status(ctx); err == nil {
		for _, p := range st.Peers {
			if p.Node != nil && p.Name == peer.Name && p.Path.Kind != localapi.PathNone {
				return p.Path.Kind
			}
		}
	}
	return localapi.PathRelay
}

func printSpeedtest(w io.Writer, r speedtestReport) {
	fmt.Fprintf(w, "Speed test with %s (%s), %v each way, path %s\n", r.Peer, r.Address, time.Duration(r.Seconds*float64(time.Second)), r.Path)
	line := func(dir string, mbps *float64, n, rt *int64) {
		if mbps == nil {
			return
		}
		fmt.Fprintf(w, "%-5s %8.1f Mbit/s  (%.1f MB", dir, *mbps, float64(*n)/1e6)
		if rt != nil {
			fmt.Fprintf(w, ", %d retransmits", *rt)
		}
		fmt.Fprintln(w, ")")
	}
	line("up", r.UpMbps, r.UpBytes, r.UpRetransmits)
	line("down", r.DownMbps, r.DownBytes, nil)
}

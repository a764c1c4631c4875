package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/tailscale/hujson"

	"weft/internal/localapi"
	"weft/internal/netcheck"
	"weft/internal/portmap"
	"weft/internal/wire"
)

// netcheckOpts are the parsed flags of `weft netcheck`.
type netcheckOpts struct {
	asJSON   bool
	relayMap string
	server   string
	timeout  time.Duration
	portmap  bool
	verbose  bool
}

func newNetcheckCmd(g *globals) *cobra.Command {
	o := &netcheckOpts{}
	cmd := &cobra.Command{
		Use:   "netcheck",
		Short: "Report what this network allows: UDP, public address, NAT kind, relay latency",
		Long: `weft netcheck measures this machine's network from this process: whether UDP
gets out, the public address:port the NAT gives it, whether that mapping
changes with the destination (a hard NAT), the latency to every relay region
(STUN, or HTTP when UDP is blocked), and whether the gateway answers UPnP,
NAT-PMP or PCP.

On a node that is up, with neither --server nor --relay-map, the node's
daemon measures: over its own socket (the one its peers reach it on) and
with the relay map its control server gave it. On a machine that is not in
a tailnet, give the relay map: from a file (--relay-map) or from the control
server (--server). See docs/netcheck.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runNetcheck(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	f.StringVar(&o.relayMap, "relay-map", "", "read the relay map from this JSON file")
	f.StringVar(&o.server, "server", "", "fetch the relay map from this control server URL (GET URL/relaymap)")
	f.DurationVar(&o.timeout, "timeout", netcheck.DefaultTimeout, "bound on the whole report")
	f.BoolVar(&o.portmap, "portmap", true, "probe the gateway for UPnP, NAT-PMP and PCP")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log each probe to stderr")
	return cmd
}

func runNetcheck(ctx context.Context, g *globals, o *netcheckOpts) error {
	if o.relayMap != "" && o.server != "" {
		return usageError{errors.New("netcheck: give one of --relay-map FILE or --server URL, not both")}
	}
	if o.timeout <= 0 {
		return usageError{fmt.Errorf("netcheck: --timeout %v must be positive", o.timeout)}
	}
	if o.relayMap == "" && o.server == "" {
		return runDaemonNetcheck(ctx, g, o)
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))

	var rm *wire.RelayMap
	var err error
	if o.relayMap != "" {
		rm, err = readRelayMapFile(o.relayMap)
	} else {
		rm, err = fetchRelayMap(ctx, o.server)
	}
	if err != nil {
		return err
	}
	c := &netcheck.Client{Logger: log, Timeout: o.timeout}
	if o.portmap {
		c.PortMapper = &portmap.Prober{Logger: log}
	}
	r, err := c.GetReport(ctx, rm)
	if err != nil {
		return err
	}
	if o.asJSON {
		return writeJSON(g.stdout, r)
	}
	return writeNetcheckReport(g.stdout, r, rm, o.portmap)
}

// runDaemonNetcheck asks the node's daemon for a report.
func runDaemonNetcheck(ctx context.Context, g *globals, o *netcheckOpts) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout+5*time.Second)
	defer cancel()
	res, err := (&localapi.Client{Socket: g.socket}).Netcheck(ctx)
	if errors.Is(err, localapi.ErrDaemonNotRunning) {
		return usageError{fmt.Errorf("netcheck: %w; or, on a machine that is not in a tailnet, pass --server URL (the control server) or --relay-map FILE", err)}
	}
	if err != nil {
		return fmt.Errorf("netcheck: %w", err)
	}
	if o.asJSON {
		return writeJSON(g.stdout, res.Report)
	}
	return writeNetcheckReport(g.stdout, res.Report, res.RelayMap, false)
}

// readRelayMapFile reads a relay map written as JSON (comments and
// trailing commas allowed).
func readRelayMapFile(path string) (*wire.RelayMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("netcheck: relay map: %w", err)
	}
	return parseRelayMap(b, path)
}

func parseRelayMap(b []byte, from string) (*wire.RelayMap, error) {
	b, err := hujson.Standardize(b)
	if err != nil {
		return nil, fmt.Errorf("netcheck: relay map %s: %w", from, err)
	}
	var rm wire.RelayMap
	if err := json.Unmarshal(b, &rm); err != nil {
		return nil, fmt.Errorf("netcheck: relay map %s: %w", from, err)
	}
	if len(rm.Regions) == 0 {
		return nil, fmt.Errorf("netcheck: relay map %s has no regions", from)
	}
	return &rm, nil
}

// fetchRelayMap GETs server/relaymap, where the control server publishes
// its relay map as JSON.
func fetchRelayMap(ctx context.Context, server string) (*wire.RelayMap, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := strings.TrimRight(server, "/") + "/relaymap"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, usageError{fmt.Errorf("netcheck: --server %q: %w", server, err)}
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("netcheck: fetch relay map: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("netcheck: fetch relay map: GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("netcheck: fetch relay map: %w", err)
	}
	return parseRelayMap(b, url)
}

// writeNetcheckReport prints the human form of r: a short list of facts,
// then the regions sorted by latency (unmeasured regions last).
func writeNetcheckReport(w io.Writer, r *netcheck.Report, rm *wire.RelayMap, probedPortmap bool) error {
	yesno := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Report:\n")
	if r.UDP {
		fmt.Fprintf(&b, "\t* UDP: true\n")
	} else {
		fmt.Fprintf(&b, "\t* UDP: false (blocked or no STUN server answered: peers will be reached through a relay)\n")
	}
	if r.IPv4 {
		fmt.Fprintf(&b, "\t* IPv4: yes, %v\n", r.GlobalV4)
	} else {
		fmt.Fprintf(&b, "\t* IPv4: no\n")
	}
	if r.IPv6 {
		fmt.Fprintf(&b, "\t* IPv6: yes, %v\n", r.GlobalV6)
	} else {
		fmt.Fprintf(&b, "\t* IPv6: no\n")
	}
	switch {
	case r.MappingVariesByDestIP == nil:
		fmt.Fprintf(&b, "\t* Mapping varies by destination IP: unknown (needs answers from two STUN servers)\n")
	case *r.MappingVariesByDestIP:
		fmt.Fprintf(&b, "\t* Mapping varies by destination IP: true (hard NAT: direct connections may need a relay)\n")
	default:
		fmt.Fprintf(&b, "\t* Mapping varies by destination IP: false (easy NAT)\n")
	}
	if probedPortmap {
		fmt.Fprintf(&b, "\t* Port mapping: UPnP %s, NAT-PMP %s, PCP %s\n", yesno(r.UPnP), yesno(r.PMP), yesno(r.PCP))
	} else {
		fmt.Fprintf(&b, "\t* Port mapping: not probed\n")
	}
	if r.PreferredRegion != 0 {
		fmt.Fprintf(&b, "\t* Nearest relay: %s (%d)\n", regionName(rm, r.PreferredRegion), r.PreferredRegion)
	} else {
		fmt.Fprintf(&b, "\t* Nearest relay: none answered\n")
	}
	fmt.Fprintf(&b, "\t* Relay latency:\n")

	ids := make([]int, 0, len(rm.Regions))
	for id := range rm.Regions {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, c int) int {
		da, oka := r.RegionLatency[a]
		dc, okc := r.RegionLatency[c]
		switch {
		case oka && okc:
			return cmp.Or(cmp.Compare(da, dc), cmp.Compare(a, c))
		case oka:
			return -1
		case okc:
			return 1
		}
		return cmp.Compare(a, c)
	})
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 1, ' ', 0)
	for _, id := range ids {
		lat := "no answer"
		if d, ok := r.RegionLatency[id]; ok {
			lat = strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
			if r.RegionLatencyVia[id] == "http" {
				lat += " (HTTP)"
			}
		}
		fmt.Fprintf(tw, "%s\t(%d):\t%s\n", regionName(rm, id), id, lat)
	}
	tw.Flush()
	for line := range strings.Lines(table.String()) {
		b.WriteString("\t\t- " + line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// regionName is the short name people know a region by.
func regionName(rm *wire.RelayMap, id int) string {
	if reg := rm.Regions[id]; reg != nil {
		if n := cmp.Or(reg.Code, reg.Name); n != "" {
			return n
		}
	}
	return "region " + strconv.Itoa(id)
}

package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/localapi"
	"weft/internal/wire"
)

func newHealthStatsCmd(g *globals) *cobra.Command {
	var asJSON bool
	var since, peer string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Summarise this node's health samples: mean, min, p50, p95, max, samples",
		Long: "Summarise the health samples the daemon takes every --health-interval (5m by\n" +
			"default): for every metric (peer round trips and paths, relay and probe round\n" +
			"trips, UDP, battery, Wi-Fi, load, memory, uptime), its mean, min, median, 95th\n" +
			"percentile, max and number of samples. docs/health.md lists the metrics.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var req localapi.HealthStatsRequest
			if since != "" {
				d, err := parseSince(since)
				if err != nil {
					return usageError{err}
				}
				req.Since = d
			}
			req.Peer = peer
			c := &localapi.Client{Socket: g.socket}
			st, err := c.HealthStats(cmd.Context(), req)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, st)
			}
			printHealthStats(g.stdout, st.Metrics)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().StringVar(&since, "since", "", "only samples from this long ago on, such as 30h or 7d; all kept samples by default")
	cmd.Flags().StringVar(&peer, "peer", "", "only this peer's metrics")
	return cmd
}

// parseSince reads a duration as Go writes it, or a number of days ("7d").
func parseSince(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.ParseFloat(n, 64); err == nil && days > 0 {
			return time.Duration(days * 24 * float64(time.Hour)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("health stats: --since %q: want a duration such as 30h or 7d", s)
	}
	return d, nil
}

// printHealthStats prints the seed's table: the mean with its unit, then
// min, p50, p95, max and the sample count.
func printHealthStats(w io.Writer, ms []wire.MetricSummary) {
	if len(ms) == 0 {
		fmt.Fprintln(w, "No health samples yet: the daemon takes the first within a minute of starting.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Metric\tmean\tmin\tp50\tp95\tmax\tsamples")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s%s\t%s\t%s\t%s\t%s\t%d\n", m.Name, num(m.Mean), m.Unit, num(m.Min), num(m.P50), num(m.P95), num(m.Max), m.Samples)
	}
	tw.Flush()
}

// num prints v with as many decimals as its size needs: 29.3, 0.52, 1024.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	case a >= 10:
		return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
	default:
		return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	}
}

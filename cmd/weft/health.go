package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/localapi"
)

func newHealthCmd(g *globals) *cobra.Command {
	var asJSON bool
	var last int
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show this node's problems now and its health history",
		Long: "Show this node's health problems now, then what changed recently: problems\n" +
			"that appeared or cleared, peers whose path moved between direct and relay,\n" +
			"peers that went offline or came back, the daemon's restarts. The daemon keeps\n" +
			"the history in its state dir, across restarts, for a node nobody watches.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if last < 0 {
				return usageError{errors.New("health: -n must be 0 (all) or more")}
			}
			c := &localapi.Client{Socket: g.socket}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			evs, err := c.HealthHistory(cmd.Context())
			if err != nil {
				return err
			}
			if last > 0 && len(evs) > last {
				evs = evs[len(evs)-last:]
			}
			if asJSON {
				health := st.Health
				if health == nil {
					health = []string{}
				}
				return writeJSON(g.stdout, struct {
					Health  []string               `json:"health"`
					Drops   *localapi.Drops        `json:"drops,omitempty"`
					History []localapi.HealthEvent `json:"history"`
				}{health, st.Drops, evs})
			}
			printHealthHistory(g.stdout, st.Health, evs, time.Local)
			if sum := st.Drops.FilterSummary(); sum != "" {
				fmt.Fprintf(g.stdout, "\nPacket filter: dropped %d packets from the tunnel (%s)\n", st.Drops.FilterTotal(), sum)
			}
			printRefused(g.stdout, st.Drops)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().IntVarP(&last, "n", "n", 20, "show the last N events; 0 for all that are kept")
	cmd.AddCommand(newHealthStatsCmd(g))
	return cmd
}

func printHealthHistory(w io.Writer, health []string, evs []localapi.HealthEvent, loc *time.Location) {
	if len(health) == 0 {
		fmt.Fprintln(w, "Health: no problems")
	}
	printHealth(w, health)
	for i := len(evs) - 1; i >= 0; i-- {
		if e := evs[i]; e.Kind == localapi.EventRecovery && e.Recovery != nil {
			fmt.Fprintf(w, "Last restart: %s, %s\n", e.Recovery.Started.In(loc).Format("2006-01-02 15:04:05"), e.Text)
			break
		}
	}
	fmt.Fprintln(w)
	if len(evs) == 0 {
		fmt.Fprintln(w, "History: nothing recorded yet")
		return
	}
	fmt.Fprintln(w, "History (oldest first):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Time.In(loc).Format("2006-01-02 15:04:05"), e.Kind, e.Text)
	}
	tw.Flush()
}

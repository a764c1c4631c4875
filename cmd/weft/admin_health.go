package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
)

func newAdminNodesHealthCmd(o *adminOpts) *cobra.Command {
	var since, peer string
	cmd := &cobra.Command{
		Use:   "health NODE",
		Short: "Show a node's health table (mean, min, p50, p95, max, samples) from the samples it reported",
		Long: "Show the seed's table for a node, by name or ID, from the health samples it\n" +
			"reported to this server: the same as `weft health stats` on the node, also\n" +
			"while the node is offline. --json prints {\"metrics\": [...]}.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d time.Duration
			if since != "" {
				var err error
				if d, err = parseSince(since); err != nil {
					return usageError{err}
				}
			}
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (adminapi.HealthReply, error) {
				return c.NodeHealth(ctx, args[0], d, peer)
			}, func(w io.Writer, rep adminapi.HealthReply) error {
				printHealthStats(w, rep.Metrics)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only samples from this long ago on, such as 30h or 7d")
	cmd.Flags().StringVar(&peer, "peer", "", "only the metrics of the node's peer of this name")
	return cmd
}

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// newAdminAuditCmd prints the audit log: every change made through the
// admin API, newest first.
func newAdminAuditCmd(o *adminOpts) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--limit N]",
		Short: "Show the audit log: who changed what, when, from where (newest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 || limit > adminapi.MaxPageSize {
				return usageError{fmt.Errorf("--limit %d: want 0 (all) to %d", limit, adminapi.MaxPageSize)}
			}
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) ([]store.AuditEntry, error) {
				return c.Audit(ctx, limit, 0)
			}, func(w io.Writer, es []store.AuditEntry) error {
				tw := table(w, "ID", "TIME", "WHO", "VIA", "FROM", "ACTION", "TARGET", "DETAIL")
				for _, e := range es {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.At.Local().Format("2006-01-02 15:04:05"),
						termText(dashIfEmpty(e.Actor)), termText(e.Credential), termText(e.Remote), e.Action,
						termText(dashIfEmpty(e.Target)), termText(dashIfEmpty(e.Detail)))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "show at most N entries (0: all)")
	return cmd
}

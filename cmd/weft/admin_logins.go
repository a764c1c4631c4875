package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/nodelogin"
)

// newAdminNodesPendingCmd lists interactive logins (weft up without a
// pre-auth key) waiting for an administrator.
func newAdminNodesPendingCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "pending",
		Short: "List machines waiting for approval to join (weft up without a pre-auth key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, (*adminapi.Client).PendingLogins, func(w io.Writer, ls []nodelogin.Login) error {
				tw := table(w, "CODE", "HOSTNAME", "FROM", "ASKED", "EXPIRES")
				for _, l := range ls {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Code, termText(dashIfEmpty(l.Hostname)), termText(l.Remote),
						when(l.Created, "-"), when(l.Expires, "-"))
				}
				return tw.Flush()
			})
		},
	}
}

// newAdminNodesApproveCmd approves an interactive login: the waiting
// machine joins as the user.
func newAdminNodesApproveCmd(o *adminOpts) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "approve CODE --user NAME",
		Short: "Let a machine waiting in weft up join as a user (the CODE is in its login URL and in nodes pending)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usageError{errors.New("nodes approve: --user NAME is required: the user the machine joins as")}
			}
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (nodelogin.Login, error) {
				return c.ApproveLogin(ctx, args[0], user)
			}, func(w io.Writer, l nodelogin.Login) error {
				fmt.Fprintf(w, "approved %s (code %s) as %s: its weft up joins now\n", termText(dashIfEmpty(l.Hostname)), l.Code, user)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user the machine joins as")
	return cmd
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
)

func newAdminConsoleLinkCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "console-link",
		Short: "Print a one-time login link to the web console (works once, for 10 minutes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				l, err := c.ConsoleLink(cmd.Context())
				if err != nil {
					return err
				}
				if o.json {
					return o.printJSON(l)
				}
				fmt.Fprintln(o.g.stdout, l.URL)
				return nil
			})
		},
	}
}

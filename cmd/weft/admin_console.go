package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
)

func newAdminConsoleLinkCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "console-link",
		Short: "Print a one-time login link to the web console (works once, for 10 minutes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, (*adminapi.Client).ConsoleLink, func(w io.Writer, l adminapi.ConsoleLinkReply) error {
				fmt.Fprintln(w, l.URL)
				return nil
			})
		},
	}
}

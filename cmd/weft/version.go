package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"weft/internal/version"
)

func newVersionCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print weft's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version.Get()
			if asJSON {
				return writeJSON(g.stdout, v)
			}
			fmt.Fprintf(g.stdout, "weft %s\ncommit %s\n%s\n", v.Version, v.Commit, v.Go)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

package main

import "github.com/spf13/cobra"

// osCommands are the subcommands only Linux has: the network lab and the
// demo build on Linux network namespaces.
func osCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{newLabCmd(g), newDemoCmd(g)}
}

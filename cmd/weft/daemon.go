package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/nodestate"
)

func newDaemonCmd(g *globals) *cobra.Command {
	var stateDir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node daemon (keeps this node in the tailnet)",
		Long: "Run the weft node daemon. It keeps the node's keys, the pinned server key and\n" +
			"the last peer map in --state-dir, answers the CLI on --socket, and reconnects\n" +
			"by itself after a restart if the node was up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDaemon(cmd.Context(), g, stateDir, verbose)
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", "/var/lib/weft-node", "directory for the node's keys and state (created 0700)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log debug detail")
	return cmd
}

func runDaemon(ctx context.Context, g *globals, stateDir string, verbose bool) error {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	st, err := nodestate.Open(stateDir)
	if err != nil {
		return err
	}
	d, err := controlclient.NewDaemon(controlclient.DaemonConfig{State: st, Logger: log.With("sub", "control")})
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := localapi.Listen(g.socket)
	if err != nil {
		return err
	}
	d.Start()
	log.Info("weft daemon running", "state", stateDir, "socket", g.socket)
	err = localapi.Serve(ctx, ln, localapi.Handler(d, log.With("sub", "localapi")))
	log.Info("daemon stopping")
	return err
}

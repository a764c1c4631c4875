//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/demo"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		keep       bool
		name       string
		throughput time.Duration
		verbose    bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole system on this machine: three nodes behind two home NATs, one as exit node",
		Long: `weft demo builds a lab of network namespaces (Busan and Fukuoka home routers,
a control server and a "what is my IP" web host), starts a weft server and three
weft daemons, makes the Busan laptop the Mac's exit node and prints what a user
would check: the node table, ping times, netcheck, the address the web sees with
and without the exit node, and throughput through the tunnel. Then it tears
everything down (--keep leaves it up). It needs root on Linux and nothing else;
it never changes the machine's own network.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Geteuid() != 0 {
				return errors.New("weft demo builds network namespaces and needs root: run it with sudo")
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the weft binary: %w", err)
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			return demo.Run(cmd.Context(), demo.Options{
				Weft:       self,
				Out:        g.stdout,
				Keep:       keep,
				LabName:    name,
				Throughput: throughput,
				Logger:     log,
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&keep, "keep", false, "leave the lab running afterwards, to explore it")
	f.StringVar(&name, "name", "demo", "lab name (namespaces start with wl-NAME-)")
	f.DurationVar(&throughput, "throughput", 10*time.Second, "how long to measure tunnel throughput")
	f.BoolVarP(&verbose, "verbose", "v", false, "log progress to stderr")
	return cmd
}

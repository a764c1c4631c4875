package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"weft/internal/stunserver"
)

func newSTUNCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "stun",
		Short: "Run a standalone STUN server",
		Long: `weft stun answers STUN Binding requests, telling each client the public
address:port it was seen from. weft server and weft relay embed the same
server; run this one where you want an extra STUN address (netcheck needs
two STUN servers to tell whether a NAT's mapping varies by destination).
It runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			log := slog.New(slog.NewTextHandler(g.stderr, nil))
			s := &stunserver.Server{Logger: log}
			if err := s.ListenAndServe(ctx, listen); err != nil {
				return fmt.Errorf("stun: %w (is the port in use?)", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":3478", "UDP address to answer STUN on")
	return cmd
}

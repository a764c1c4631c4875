package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/localapi"
	"weft/internal/wire"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node's state and its peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := (&localapi.Client{Socket: g.socket}).Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(g.stdout, st, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printStatus(w io.Writer, st *localapi.Status, now time.Time) {
	switch st.BackendState {
	case localapi.StateNeedsLogin:
		fmt.Fprintln(w, "Logged out. Run `weft up --server URL --auth-key KEY` to join a tailnet.")
	case localapi.StateStopped:
		fmt.Fprintln(w, "Stopped. Run `weft up` to connect.")
	case localapi.StateStarting:
		fmt.Fprintf(w, "Connecting to %s...\n", st.ServerURL)
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "Last error: %s\n", st.LastError)
	}
	if st.Self == nil {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESSES\tOS\tSTATE\tLAST SEEN")
	row := func(n *wire.Node, state string) {
		os := n.OS
		if os == "" && n.Hostinfo != nil {
			os = n.Hostinfo.OS
		}
		if os == "" {
			os = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, addrList(n), os, state, lastSeen(n, now))
	}
	row(st.Self, "self")
	for _, p := range st.Peers {
		state := "offline"
		if p.Online {
			state = "online"
		}
		row(p, state)
	}
	tw.Flush()
}

func lastSeen(n *wire.Node, now time.Time) string {
	if n.Online {
		return "now"
	}
	if n.LastSeen.IsZero() {
		return "never"
	}
	return now.Sub(n.LastSeen).Round(time.Second).String() + " ago"
}

package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/localapi"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

func newStatusCmd(g *globals) *cobra.Command {
	return statusViewCmd(g, "status", "Show this node's state and its peers", "print as JSON",
		func(st *localapi.Status) any { return st },
		func(w io.Writer, st *localapi.Status) { printStatus(w, st, time.Now()) })
}

// statusViewCmd makes a node command that shows part of the daemon's
// status: with --json (flag help jsonHelp) the value view picks from it,
// else what human prints.
func statusViewCmd(g *globals, use, short, jsonHelp string, view func(*localapi.Status) any, human func(io.Writer, *localapi.Status)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := (&localapi.Client{Socket: g.socket}).Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, view(st))
			}
			human(g.stdout, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, jsonHelp)
	return cmd
}

func printStatus(w io.Writer, st *localapi.Status, now time.Time) {
	lastErr := st.LastError
	switch st.BackendState {
	case localapi.StateNeedsLogin:
		if lastErr != "" && st.ServerURL != "" {
			// Why this node must log in again (its key expired,
			// the server deleted it) is the news, with what to run.
			fmt.Fprintf(w, "Not logged in: %s\n", termText(lastErr))
			lastErr = ""
			break
		}
		fmt.Fprintln(w, "Logged out. Run `weft up --server URL --auth-key KEY` to join a tailnet.")
	case localapi.StateStopped:
		fmt.Fprintln(w, "Stopped. Run `weft up` to connect.")
	case localapi.StateStarting:
		fmt.Fprintf(w, "Connecting to %s...\n", st.ServerURL)
	}
	if lastErr != "" {
		fmt.Fprintf(w, "Last error: %s\n", termText(lastErr))
	}
	if st.Self == nil {
		printHealth(w, st.Health)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tNAME\tOS\tSTATE\tPATH\tRTT\tRX\tTX\tHANDSHAKE\tOFFERS")
	fmt.Fprintf(tw, "%s\t%s\t%s\tself\t-\t-\t-\t-\t-\t%s\n", firstAddr(st.Self), termText(st.Self.Name), nodeOS(st.Self), offers(st.Self))
	for _, p := range st.Peers {
		state := "offline"
		if p.Online {
			state = "online"
		} else if !p.LastSeen.IsZero() {
			state = "offline, seen " + lastSeen(p.Node, now)
		}
		rtt := "-"
		if p.RTTMS > 0 {
			rtt = fmtMS(p.RTTMS)
		}
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", firstAddr(p.Node), termText(p.Name), nodeOS(p.Node), state,
			p.Path.String(), rtt, fmtBytes(p.RxBytes), fmtBytes(p.TxBytes), hs, offers(p.Node))
	}
	tw.Flush()
	printExitInUse(w, st)
	printHealth(w, st.Health)
	if sum := st.Drops.FilterSummary(); sum != "" {
		fmt.Fprintf(w, "Filtered: %d packets from the tunnel the policy did not let in (%s; docs/acl.md)\n", st.Drops.FilterTotal(), sum)
	}
	printRefused(w, st.Drops)
}

// printRefused says what the data plane refused to carry for safety, if
// anything: packets from the LAN into the tunnel, and tunnel packets to
// destinations this node does not route for.
func printRefused(w io.Writer, d *localapi.Drops) {
	if d == nil {
		return
	}
	if d.IntoTunnel > 0 {
		fmt.Fprintf(w, "Refused: %d packets from this node's other networks that tried to enter the tunnel (docs/exit-nodes.md)\n", d.IntoTunnel)
	}
	if d.FromTunnel > 0 {
		fmt.Fprintf(w, "Refused: %d packets from peers to destinations this node does not route for (docs/exit-nodes.md)\n", d.FromTunnel)
	}
}

func printHealth(w io.Writer, health []string) {
	for _, h := range health {
		fmt.Fprintf(w, "Health: %s\n", termText(h))
	}
}

// offers is what a node offers the tailnet, approved: "exit" for an exit
// node and its subnet routes, "-" for nothing.
func offers(n *wire.Node) string {
	var out []string
	if n.OffersExit() {
		out = append(out, "exit")
	}
	for _, r := range n.Routes {
		if !tailnet.IsExitRoute(r) {
			out = append(out, r.String())
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

// firstAddr is a node's IPv4 tailnet address, or its first one.
func firstAddr(n *wire.Node) string {
	for _, a := range n.Addresses {
		if a.Addr().Is4() {
			return a.Addr().String()
		}
	}
	if len(n.Addresses) > 0 {
		return n.Addresses[0].Addr().String()
	}
	return "-"
}

// nodeOS is the OS a node reports, escaped for the terminal (termText).
func nodeOS(n *wire.Node) string {
	if n.OS != "" {
		return termText(n.OS)
	}
	if n.Hostinfo != nil && n.Hostinfo.OS != "" {
		return termText(n.Hostinfo.OS)
	}
	return "-"
}

func fmtMS(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
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

// printExitInUse says which exit node internet traffic goes through, when
// one is chosen.
func printExitInUse(w io.Writer, st *localapi.Status) {
	p := st.Prefs
	if p == nil || (p.ExitNode == "" && !p.ExitNodeAuto && len(p.ExitNodeList) == 0) {
		return
	}
	use := st.ExitNode
	if use == "" {
		use = "none (waiting for " + orNone(p.ExitNode) + ")"
	}
	switch {
	case p.ExitNodeAuto:
		use += " (auto)"
	case len(p.ExitNodeList) > 0:
		use += " (failover list " + strings.Join(p.ExitNodeList, ", ") + ")"
	}
	fmt.Fprintf(w, "Exit node: %s\n", use)
}

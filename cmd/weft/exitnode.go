package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/osnet"
	"weft/internal/wire"
)

// whoamiPath is where a weft control server answers a GET with the
// caller's address; `weft exit-node check` asks the node's own control
// server there unless given a URL.
const whoamiPath = "/whoami"

func newExitNodeCmd(g *globals) *cobra.Command {
	return groupCmd("exit-node", "List the tailnet's exit nodes, or check where traffic leaves",
		newExitNodeListCmd(g), newExitNodeCheckCmd(g))
}

// exitNodeRow is one line of `weft exit-node list`.
type exitNodeRow struct {
	Name     string        `json:"name"`
	Address  string        `json:"address"`
	Online   bool          `json:"online"`
	Path     localapi.Path `json:"path"`
	Selected bool          `json:"selected"`
}

func exitNodeRows(st *localapi.Status) []exitNodeRow {
	rows := []exitNodeRow{}
	for _, p := range st.Peers {
		if p.Node == nil || !p.Node.OffersExit() {
			continue
		}
		rows = append(rows, exitNodeRow{Name: p.Name, Address: firstAddr(p.Node), Online: p.Online, Path: p.Path, Selected: isChosenExit(st.Prefs, p.Node)})
	}
	return rows
}

// isChosenExit reports whether n is the exit node prefs chose: by node ID
// once the daemon resolved the choice, by the name or address given
// before that.
func isChosenExit(prefs *localapi.Prefs, n *wire.Node) bool {
	switch {
	case prefs == nil:
		return false
	case prefs.ExitNodeID != 0:
		return n.ID == prefs.ExitNodeID
	default:
		return n.Matches(prefs.ExitNode)
	}
}

func newExitNodeListCmd(g *globals) *cobra.Command {
	return statusViewCmd(g, "list", "List the peers approved as exit nodes (* marks the one in use)", "print the list as JSON",
		func(st *localapi.Status) any { return exitNodeRows(st) },
		func(w io.Writer, st *localapi.Status) { printExitNodes(w, exitNodeRows(st), st.Prefs) })
}

func printExitNodes(w io.Writer, rows []exitNodeRow, prefs *localapi.Prefs) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No exit nodes in the tailnet. On the node that should be one run\n"+
			"  weft set --advertise-exit-node\nand on the server\n  weft admin routes approve NAME exit")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tNAME\tADDRESS\tONLINE\tPATH")
	for _, r := range rows {
		mark, online := "", "no"
		if r.Selected {
			mark = "*"
		}
		if r.Online {
			online = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, termText(r.Name), r.Address, online, r.Path.String())
	}
	tw.Flush()
	if prefs != nil && prefs.ExitNode != "" {
		found := false
		for _, r := range rows {
			found = found || r.Selected
		}
		if !found {
			fmt.Fprintf(w, "The chosen exit node %q is not an exit node now; internet traffic is held back until it is (weft set --exit-node= stops using it).\n", prefs.ExitNode)
		}
	} else {
		fmt.Fprintln(w, "No exit node in use; choose one with: weft set --exit-node NAME")
	}
}

// checkResult is what `weft exit-node check --json` prints.
type checkResult struct {
	URL      string `json:"url"`
	ExitNode string `json:"exit_node,omitempty"`
	Direct   string `json:"direct"`
	Tunnel   string `json:"through_exit_node"`
}

func newExitNodeCheckCmd(g *globals) *cobra.Command {
	var url string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check [URL]",
		Short: "Show the public address the internet sees, directly and through the exit node",
		Long: `weft exit-node check asks an address-echo URL twice: once from a socket that
carries weft's own mark, which bypasses the exit node as weft's own traffic
does (needs root), and once as any program would. With an exit node in use
the second answer is the exit node's public address. By default it asks the
node's own control server (SERVER/whoami), which the tailnet runs and can
reach also in a closed network; URL (or --url) is any service that answers
with the caller's address, such as the lab's web host.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				url = args[0]
			}
			res, err := checkExitNode(cmd.Context(), g, url, timeout)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, res)
			}
			via := "through exit node " + res.ExitNode
			if res.ExitNode == "" {
				via = "as other programs (no exit node)"
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(g.stdout, "Asked %s:\n", res.URL)
			fmt.Fprintf(tw, "direct (weft's own traffic):\t%s\n", res.Direct)
			fmt.Fprintf(tw, "%s:\t%s\n", via, res.Tunnel)
			tw.Flush()
			switch {
			case res.ExitNode != "" && res.Direct == res.Tunnel:
				fmt.Fprintf(g.stdout, "Traffic does not leave through %s yet: the same address both ways. See `weft status` for the path to it.\n", res.ExitNode)
			case res.ExitNode != "":
				fmt.Fprintf(g.stdout, "Traffic leaves through %s.\n", res.ExitNode)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "`URL` that answers with the caller's public address (default: the control server's "+whoamiPath+")")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long each request may take")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func checkExitNode(ctx context.Context, g *globals, url string, timeout time.Duration) (*checkResult, error) {
	res := &checkResult{URL: url}
	// The daemon is asked for the name of the exit node in use and its
	// control server (the default URL); with a URL the check works
	// without it.
	st, stErr := (&localapi.Client{Socket: g.socket}).Status(ctx)
	if stErr == nil {
		// The one in use (a failover list's current pick), else the
		// one chosen, which traffic waits for.
		res.ExitNode = st.ExitNode
		if res.ExitNode == "" && st.Prefs != nil {
			res.ExitNode = st.Prefs.ExitNode
		}
	}
	if res.URL == "" {
		var urls []string
		if stErr == nil {
			urls = controlclient.ServerURLs(st.ServerURL)
		}
		if len(urls) == 0 {
			return nil, usageError{fmt.Errorf("exit-node check: no URL to ask: the node has no control server to ask (%v); pass --url with an address-echo service", orNoServer(stErr))}
		}
		res.URL = urls[0] + whoamiPath
	}
	direct, err := echo(ctx, osnet.Dialer(osnet.DefaultMark), res.URL, timeout)
	if err != nil {
		return nil, fmt.Errorf("asked %s directly, as weft's own traffic goes: %w; pass --url to ask another address-echo service", res.URL, err)
	}
	tunnel, err := echo(ctx, &net.Dialer{}, res.URL, timeout)
	if err != nil {
		return nil, fmt.Errorf("asked %s as any program would (through the exit node, if one is in use): %w", res.URL, err)
	}
	res.Direct, res.Tunnel = direct, tunnel
	return res, nil
}

// orNoServer is why there is no server URL to ask: the daemon's error, or
// that it has none.
func orNoServer(err error) string {
	if err != nil {
		return err.Error()
	}
	return "weft up has not been run"
}

// echo fetches url over connections from d and returns the answer's first
// line, which an address-echo service fills with the caller's address.
func echo(ctx context.Context, d *net.Dialer, url string, timeout time.Duration) (string, error) {
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: timeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", "curl/8 (weft exit-node check)")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if line == "" {
		return "", fmt.Errorf("%s answered with an empty body; is it an address-echo URL?", url)
	}
	return line, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/netutil"
	"weft/internal/nodelogin"
	"weft/internal/wire"
)

func newUpCmd(g *globals) *cobra.Command {
	var req localapi.UpRequest
	var servers []string
	var authKeyFile, caFile string
	var asJSON bool
	var pf prefsFlags // routing flags, shared with weft set (set.go)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Join the tailnet (register with a pre-auth key, or sign in at a URL it prints) and connect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			edit, err := pf.edit(cmd.Flags())
			if err != nil {
				return err
			}
			req.Prefs = edit
			req.ServerURL = strings.Join(servers, ",")
			if req.AuthKey, err = upAuthKey(req.AuthKey, authKeyFile, os.Getenv); err != nil {
				return err
			}
			ca, err := readCAFile(caFile)
			if err != nil {
				return err
			}
			req.ServerCA = string(ca)
			c := &localapi.Client{Socket: g.socket}
			if req.AuthKey == "" {
				if req.AuthKey, err = interactiveLogin(cmd.Context(), g, c, req); err != nil {
					return err
				}
			}
			st, err := c.Up(cmd.Context(), req)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, st)
			}
			if st.Self != nil {
				fmt.Fprintf(g.stdout, "weft is up as %s (%s)\n", st.Self.Name, addrList(st.Self))
			} else {
				fmt.Fprintf(g.stdout, "weft is up; connecting to %s\n", st.ServerURL)
			}
			if st.LastError != "" {
				fmt.Fprintf(g.stderr, "warning: %s\n", st.LastError)
			}
			for _, n := range st.Notices {
				fmt.Fprintf(g.stderr, "note: %s\n", n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&servers, "server", nil, "control server `URL` (default: the one from the last up); several servers of one tailnet\n"+
		"as a comma list or a repeated flag, tried in turn whenever the connection fails (docs/ha.md)")
	f.StringVar(&req.AuthKey, "auth-key", "", "pre-auth `KEY` from weft admin keys create (not needed once registered; other users see it in ps: prefer --auth-key-file or $"+authKeyEnv+")")
	f.StringVar(&authKeyFile, "auth-key-file", "", "file holding the pre-auth key (- reads standard input)")
	f.StringVar(&req.Hostname, "hostname", "", "name for this node (default: the OS hostname)")
	f.StringVar(&caFile, "ca-file", "", "PEM certificates to trust for the server's TLS besides the system's (a private CA); the node keeps them with the server")
	f.BoolVar(&asJSON, "json", false, "print the resulting status as JSON")
	f.BoolVar(&req.RotateKey, "rotate-key", false, "replace this node's WireGuard key with a new one, keeping its name and addresses")
	pf.register(f)
	return cmd
}

func newDownCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Disconnect from the tailnet and stay disconnected (also after restarts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return (&localapi.Client{Socket: g.socket}).Down(cmd.Context())
		},
	}
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Disconnect and forget the server, its pinned key and this node's registration",
		Long: "Disconnect, tell the control server to disable this node's key (an ephemeral\n" +
			"node is deleted), and forget the server, its pinned key and the registration.\n" +
			"The node forgets them even if the server cannot be reached; weft logout then\n" +
			"says so and exits 1. Join again with `weft up --auth-key KEY`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return (&localapi.Client{Socket: g.socket}).Logout(cmd.Context())
		},
	}
}

// addrList joins a node's tailnet addresses without prefix lengths.
func addrList(n *wire.Node) string {
	var out []string
	for _, p := range n.Addresses {
		out = append(out, p.Addr().String())
	}
	return strings.Join(out, ", ")
}

// interactiveLogin is weft up without a pre-auth key on a node that is
// not registered: it asks the server for a login, prints the URL for a
// person to open (sign in, or have an administrator approve it) and waits
// for the one-off pre-auth key the server hands out on approval. A
// registered node needs no key and gets "" back.
func interactiveLogin(ctx context.Context, g *globals, c *localapi.Client, req localapi.UpRequest) (string, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	if st.BackendState != localapi.StateNeedsLogin {
		return "", nil
	}
	server := req.ServerURL
	if server == "" {
		server = st.ServerURL
	}
	if server == "" {
		return "", usageError{errors.New("up: give --server URL (and --auth-key KEY, or sign in at the URL weft up prints)")}
	}
	host := req.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	// The login is made from this process: it trusts what the daemon
	// trusts for the server (its --ca-file, the node's kept CA) and
	// this up's --ca-file, besides the system's roots. A daemon older
	// than POST /server-ca answers an error: then this up's --ca-file
	// alone, as before.
	kept, _ := c.ServerCA(ctx, server)
	tc, err := netutil.TrustTLS([]byte(req.ServerCA), []byte(kept))
	if err != nil {
		return "", err
	}
	lc := &nodelogin.Client{HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}}
	// Several servers of one tailnet (docs/ha.md): the login starts at
	// the first that answers, and waits there; any of them can approve it.
	var start nodelogin.StartReply
	for _, u := range controlclient.ServerURLs(server) {
		if start, err = lc.Start(ctx, u, host); err == nil {
			server = u
			break
		}
	}
	if err != nil {
		return "", netutil.UntrustedCertHint(err, controlclient.CAFileHint)
	}
	fmt.Fprintf(g.stdout, "To join the tailnet, open this URL and sign in (without an identity provider, an administrator approves it):\n\n\t%s\n\nWaiting until %s...\n",
		start.URL, start.Expires.Local().Format("15:04:05"))
	grant, err := lc.Wait(ctx, server, start)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(g.stdout, "Approved: joining as %s\n", termText(grant.User))
	return grant.AuthKey, nil
}

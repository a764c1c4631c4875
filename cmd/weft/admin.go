package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/netutil"
	"weft/internal/store"
)

// adminOpts are the flags shared by every weft admin subcommand.
type adminOpts struct {
	g       *globals
	dataDir string
	json    bool
	// server, apiKeyFile and caFile, when server is set, administer a
	// remote server through its REST API instead of the local socket.
	server, apiKeyFile, caFile string
}

func newAdminCmd(g *globals) *cobra.Command {
	o := &adminOpts{g: g}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer a running control server: users, pre-auth keys, nodes, routes, policy, API keys",
		Long: "weft admin talks to the control server through the admin socket in its data\n" +
			"directory (owner-only), so run it as the user that runs weft server. With\n" +
			"--server URL --api-key-file F it administers a server from another machine\n" +
			"through the REST API, with the permissions of the key's user.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	defDir := os.Getenv("WEFT_DATA_DIR")
	if defDir == "" {
		defDir = "/var/lib/weft"
	}
	cmd.PersistentFlags().StringVar(&o.dataDir, "data-dir", defDir, "data directory of the control server (env WEFT_DATA_DIR)")
	cmd.PersistentFlags().BoolVar(&o.json, "json", false, "print JSON for scripts instead of tables")
	cmd.PersistentFlags().StringVar(&o.server, "server", "", "administer the server at this URL through its REST API instead of the local socket")
	cmd.PersistentFlags().StringVar(&o.apiKeyFile, "api-key-file", "", "file holding the API key for --server (from `weft admin apikeys create`)")
	cmd.PersistentFlags().StringVar(&o.caFile, "ca-file", "", "PEM certificates to trust for an https --server (default: the system's)")
	cmd.AddCommand(newAdminUsersCmd(o), newAdminKeysCmd(o), newAdminNodesCmd(o), newAdminRoutesCmd(o), newAdminPolicyCmd(o), newAdminDNSCmd(o),
		newAdminAPIKeysCmd(o), newAdminDBCmd(o), newAdminConsoleLinkCmd(o), newAdminAuditCmd(o))
	return cmd
}

// call runs fn with a client for the server's admin socket and turns a
// missing server into advice.
func (o *adminOpts) call(ctx context.Context, fn func(c *adminapi.Client) error) error {
	if o.server != "" {
		return o.callRemote(fn)
	}
	sock := adminapi.SocketPath(o.dataDir)
	c := adminapi.NewClient(sock)
	defer c.Close()
	err := fn(c)
	if errors.Is(err, adminapi.ErrServerNotRunning) {
		return fmt.Errorf("cannot reach the control server at %s: is `weft server --data-dir %s` running?", sock, o.dataDir)
	}
	return adminError(err)
}

// callRemote runs fn with a client for the REST API of --server.
func (o *adminOpts) callRemote(fn func(c *adminapi.Client) error) error {
	if o.apiKeyFile == "" {
		return usageError{errors.New("--server needs --api-key-file FILE with an API key (`weft admin apikeys create` on the server's machine)")}
	}
	k, err := readSecret(o.apiKeyFile, "")
	if err != nil {
		return usageError{fmt.Errorf("--api-key-file: %w", err)}
	}
	if k == "" {
		return usageError{fmt.Errorf("--api-key-file %s is empty", o.apiKeyFile)}
	}
	// The same trust as a node's: the system's roots and the CA.
	ca, err := readCAFile(o.caFile)
	if err != nil {
		return err
	}
	tc, err := netutil.TrustTLS(ca)
	if err != nil {
		return usageError{err}
	}
	c, err := adminapi.NewRemoteClient(o.server, k, tc)
	if err != nil {
		return usageError{err}
	}
	defer c.Close()
	err = fn(c)
	if errors.Is(err, adminapi.ErrServerNotRunning) {
		return fmt.Errorf("cannot reach the control server at %s: is it running, and is the URL right?", o.server)
	}
	return adminError(err)
}

// adminError makes input the server refused a usage error (exit 2).
func adminError(err error) error {
	if errors.Is(err, store.ErrInvalid) {
		// The server refused what was typed: a usage error, exit 2.
		return usageError{err}
	}
	return err
}

// callShow runs get with a client for the server and prints what it
// returns: indented JSON with --json, else human's text for people. Every
// admin command that answers with a record or a list prints this way.
func callShow[T any](ctx context.Context, o *adminOpts, get func(c *adminapi.Client, ctx context.Context) (T, error), human func(w io.Writer, v T) error) error {
	return o.call(ctx, func(c *adminapi.Client) error {
		v, err := get(c, ctx)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(v)
		}
		return human(o.g.stdout, v)
	})
}

// printJSON writes v indented, for --json.
func (o *adminOpts) printJSON(v any) error { return writeJSON(o.g.stdout, v) }

// writeJSON writes v to w as indented JSON, the form of every --json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; the caller writes tab-separated rows and
// calls flush.
func table(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// when formats a time for tables: local date and minute, or none.
func when(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return t.Local().Format("2006-01-02 15:04")
}

// dashIfEmpty keeps table columns aligned when a field is empty.
func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

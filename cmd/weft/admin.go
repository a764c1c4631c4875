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
	"weft/internal/store"
)

// adminOpts are the flags shared by every weft admin subcommand.
type adminOpts struct {
	g       *globals
	dataDir string
	json    bool
}

func newAdminCmd(g *globals) *cobra.Command {
	o := &adminOpts{g: g}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer a running control server: users, pre-auth keys, nodes, routes, policy, API keys",
		Long: "weft admin talks to the control server through the admin socket in its data\n" +
			"directory (owner-only), so run it as the user that runs weft server.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	defDir := os.Getenv("WEFT_DATA_DIR")
	if defDir == "" {
		defDir = "/var/lib/weft"
	}
	cmd.PersistentFlags().StringVar(&o.dataDir, "data-dir", defDir, "data directory of the control server (env WEFT_DATA_DIR)")
	cmd.PersistentFlags().BoolVar(&o.json, "json", false, "print JSON for scripts instead of tables")
	cmd.AddCommand(newAdminUsersCmd(o), newAdminKeysCmd(o), newAdminNodesCmd(o), newAdminRoutesCmd(o), newAdminPolicyCmd(o), newAdminDNSCmd(o),
		newAdminAPIKeysCmd(o), newAdminConsoleLinkCmd(o), newAdminAuditCmd(o))
	return cmd
}

// call runs fn with a client for the server's admin socket and turns a
// missing server into advice.
func (o *adminOpts) call(ctx context.Context, fn func(c *adminapi.Client) error) error {
	sock := adminapi.SocketPath(o.dataDir)
	c := adminapi.NewClient(sock)
	defer c.Close()
	err := fn(c)
	if errors.Is(err, adminapi.ErrServerNotRunning) {
		return fmt.Errorf("cannot reach the control server at %s: is `weft server --data-dir %s` running?", sock, o.dataDir)
	}
	if errors.Is(err, store.ErrInvalid) {
		// The server refused what was typed: a usage error, exit 2.
		return usageError{err}
	}
	return err
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

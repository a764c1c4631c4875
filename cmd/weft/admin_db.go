package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"weft/internal/store"
)

// newAdminDBCmd is `weft admin db`: work on the server's database itself
// rather than through a running server (docs/postgres.md).
func newAdminDBCmd(o *adminOpts) *cobra.Command {
	cmd := groupCmd("db", "Work on the control server's database: move a tailnet from SQLite to PostgreSQL")
	var dbURL string
	var replace bool
	mig := &cobra.Command{
		Use:   "migrate-from-sqlite FILE",
		Short: "Copy the tailnet in an SQLite database (such as DATA-DIR/weft.db) into PostgreSQL",
		Long: "Copy every user, key, node (with its ID, name, keys and addresses), route, policy,\n" +
			"DNS setting, API key and audit entry from the SQLite database FILE into the\n" +
			"PostgreSQL database --db (or $" + dbEnv + ") in one transaction, then read it back\n" +
			"and compare. FILE may be in use by a running server: it is opened read-only and\n" +
			"copied from a consistent snapshot; changes made after the snapshot are not\n" +
			"copied, so stop the old server first when nothing may be missed. Start the\n" +
			"servers on PostgreSQL after the copy. A target that already holds a tailnet is\n" +
			"refused unless --replace.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := serverDBURL(dbURL)
			if target == "" || !store.IsPostgresURL(target) {
				return usageError{fmt.Errorf("give the PostgreSQL database with --db postgres://USER@HOST/DB (or postgres:///DB?host=/run/postgresql) or $%s", dbEnv)}
			}
			rep, err := store.CopySQLiteToPostgres(cmd.Context(), args[0], target, store.CopyOptions{Replace: replace})
			if errors.Is(err, store.ErrTargetNotEmpty) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			if o.json {
				return o.printJSON(rep)
			}
			tw := table(o.g.stdout, "TABLE", "SQLITE", "POSTGRESQL")
			for _, t := range rep.Tables {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", t.Table, t.Source, t.Target)
			}
			tw.Flush()
			fmt.Fprintf(o.g.stdout, "copied into %s; %d nodes checked: same IDs, names, keys, addresses and routes\n",
				store.RedactURL(target), rep.Nodes)
			return nil
		},
	}
	mig.Flags().StringVar(&dbURL, "db", "", "PostgreSQL database to copy into, as a libpq URL (env "+dbEnv+")")
	mig.Flags().BoolVar(&replace, "replace", false, "delete the tailnet the PostgreSQL database already holds, in the same transaction")
	cmd.AddCommand(mig)
	return cmd
}

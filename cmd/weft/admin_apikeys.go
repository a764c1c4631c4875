package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// newAdminAPIKeysCmd manages the keys of the REST API (/api/v1 on the
// server's port). Keys are managed only here, on the server's machine:
// the REST API itself cannot mint or revoke them, so a leaked key cannot
// make itself more keys.
func newAdminAPIKeysCmd(o *adminOpts) *cobra.Command {
	return groupCmd("apikeys", "Create, list and revoke API keys of the REST API",
		newAdminAPIKeysCreateCmd(o), newAdminAPIKeysListCmd(o), newAdminAPIKeysRevokeCmd(o))
}

func newAdminAPIKeysCreateCmd(o *adminOpts) *cobra.Command {
	var expiry, user string
	create := &cobra.Command{
		Use:   "create [--expiry 90d] [--user NAME]",
		Short: "Create an API key and print it alone on the last line (it is shown only this once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := adminapi.ParseExpiry(expiry); err != nil {
				return usageError{fmt.Errorf("--expiry: %s", strings.TrimPrefix(err.Error(), "store: invalid argument: "))}
			}
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (adminapi.APIKeyReply, error) {
				return c.CreateAPIKey(ctx, adminapi.APIKeyRequest{Expiry: expiry, User: user})
			}, func(w io.Writer, k adminapi.APIKeyReply) error {
				fmt.Fprintln(w, k.Key)
				return nil
			})
		},
	}
	create.Flags().StringVar(&expiry, "expiry", "90d", "how long the key works, such as 90d or 720h; 0 for never")
	create.Flags().StringVar(&user, "user", "", "user the key acts for, with their role (default: the server's administrator)")
	return create
}

func newAdminAPIKeysListCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List API keys (without their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, (*adminapi.Client).ListAPIKeys, printAPIKeys)
		},
	}
}

func printAPIKeys(w io.Writer, ks []store.APIKey) error {
	now := time.Now()
	tw := table(w, "PREFIX", "CREATED", "EXPIRES", "LAST USED", "STATE", "USER")
	for _, k := range ks {
		state := "live"
		switch {
		case !k.RevokedAt.IsZero():
			state = "revoked"
		case !k.Live(now):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Prefix, when(k.CreatedAt, "-"), when(k.Expiry, "never"),
			when(k.LastUsed, "never"), state, dashIfEmpty(k.User))
	}
	return tw.Flush()
}

func newAdminAPIKeysRevokeCmd(o *adminOpts) *cobra.Command {
	return o.keyEndCmd("revoke PREFIX", "Revoke an API key for good: requests with it get 401 from now on",
		"revoked API key %s\n", (*adminapi.Client).RevokeAPIKey)
}

// keyEndCmd makes the subcommand that ends a key (an API key or a
// pre-auth key) by its prefix or whole secret; done says so with the
// prefix alone, as a Printf format.
func (o *adminOpts) keyEndCmd(use, short, done string, end func(c *adminapi.Client, ctx context.Context, id string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				if err := end(c, cmd.Context(), args[0]); err != nil {
					return err
				}
				if !o.json {
					prefix, _, _ := strings.Cut(strings.TrimSpace(args[0]), "_") // never echo a secret
					fmt.Fprintf(o.g.stdout, done, prefix)
				}
				return nil
			})
		},
	}
}

package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
)

// newAdminAPIKeysCmd manages the keys of the REST API (/api/v1 on the
// server's port). Keys are managed only here, on the server's machine:
// the REST API itself cannot mint or revoke them, so a leaked key cannot
// make itself more keys.
func newAdminAPIKeysCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "apikeys", Short: "Create, list and revoke API keys of the REST API", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	cmd.AddCommand(newAdminAPIKeysCreateCmd(o), newAdminAPIKeysListCmd(o), newAdminAPIKeysRevokeCmd(o))
	return cmd
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
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				k, err := c.CreateAPIKey(cmd.Context(), adminapi.APIKeyRequest{Expiry: expiry, User: user})
				if err != nil {
					return err
				}
				if o.json {
					return o.printJSON(k)
				}
				fmt.Fprintln(o.g.stdout, k.Key)
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
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				ks, err := c.ListAPIKeys(cmd.Context())
				if err != nil {
					return err
				}
				if o.json {
					return o.printJSON(ks)
				}
				now := time.Now()
				tw := table(o.g.stdout, "PREFIX", "CREATED", "EXPIRES", "LAST USED", "STATE", "USER")
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
			})
		},
	}
}

func newAdminAPIKeysRevokeCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke PREFIX",
		Short: "Revoke an API key for good: requests with it get 401 from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				if err := c.RevokeAPIKey(cmd.Context(), args[0]); err != nil {
					return err
				}
				if !o.json {
					prefix, _, _ := strings.Cut(strings.TrimSpace(args[0]), "_") // never echo a secret
					fmt.Fprintf(o.g.stdout, "revoked API key %s\n", prefix)
				}
				return nil
			})
		},
	}
}

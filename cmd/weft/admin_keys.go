package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/store"
)

func newAdminKeysCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Create, list and expire pre-auth keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	cmd.AddCommand(newAdminKeysCreateCmd(o), newAdminKeysListCmd(o), newAdminKeysExpireCmd(o))
	return cmd
}

func newAdminKeysCreateCmd(o *adminOpts) *cobra.Command {
	var req adminapi.KeyRequest
	var tags string
	create := &cobra.Command{
		Use:   "create --user USER",
		Short: "Create a pre-auth key and print it alone on stdout (it is shown only this once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.User == "" {
				return usageError{fmt.Errorf("keys create needs --user")}
			}
			var err error
			if req.Tags, err = store.ParseTags(tags); err != nil {
				return usageError{fmt.Errorf("--tags: %s", strings.TrimPrefix(err.Error(), "store: "))}
			}
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				k, err := c.CreateKey(cmd.Context(), req)
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
	create.Flags().StringVar(&req.User, "user", "", "user who owns the key and the nodes it registers (required)")
	create.Flags().BoolVar(&req.Reusable, "reusable", false, "allow the key to register any number of nodes (default: one)")
	create.Flags().BoolVar(&req.Ephemeral, "ephemeral", false, "nodes registered with it are removed a few minutes after they disconnect")
	create.Flags().StringVar(&req.Expiry, "expiry", "24h", "how long the key works, such as 1h or 720h; 0 for never")
	create.Flags().StringVar(&tags, "tags", "", "comma-separated tags, such as tag:server; tagged nodes belong to no user and never expire")
	return create
}

func newAdminKeysListCmd(o *adminOpts) *cobra.Command {
	var listUser string
	list := &cobra.Command{
		Use:   "list",
		Short: "List pre-auth keys (without their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				ks, err := c.ListKeys(cmd.Context(), listUser)
				if err != nil {
					return err
				}
				if o.json {
					return o.printJSON(ks)
				}
				now := time.Now()
				tw := table(o.g.stdout, "PREFIX", "USER", "REUSABLE", "EPHEMERAL", "TAGS", "USES", "EXPIRES", "STATE")
				for _, k := range ks {
					state := "usable"
					switch {
					case k.Expired(now):
						state = "expired"
					case !k.Usable(now):
						state = "used"
					}
					fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\t%d\t%s\t%s\n", k.Prefix, k.User, k.Reusable, k.Ephemeral,
						dashIfEmpty(strings.Join(k.Tags, ",")), k.Uses, when(k.Expiry, "never"), state)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listUser, "user", "", "only this user's keys")
	return list
}

func newAdminKeysExpireCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "expire PREFIX",
		Short: "Make a pre-auth key unusable from now on (nodes it registered stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				if err := c.ExpireKey(cmd.Context(), args[0]); err != nil {
					return err
				}
				if !o.json {
					prefix, _, _ := strings.Cut(args[0], "_") // never echo a secret
					fmt.Fprintf(o.g.stdout, "expired key %s\n", prefix)
				}
				return nil
			})
		},
	}
}

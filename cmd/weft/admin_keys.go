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

func newAdminKeysCmd(o *adminOpts) *cobra.Command {
	return groupCmd("keys", "Create, list and expire pre-auth keys",
		newAdminKeysCreateCmd(o), newAdminKeysListCmd(o), newAdminKeysExpireCmd(o))
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
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (adminapi.KeyReply, error) {
				return c.CreateKey(ctx, req)
			}, func(w io.Writer, k adminapi.KeyReply) error {
				fmt.Fprintln(w, k.Key)
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
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) ([]store.AuthKey, error) {
				return c.ListKeys(ctx, listUser)
			}, printAuthKeys)
		},
	}
	list.Flags().StringVar(&listUser, "user", "", "only this user's keys")
	return list
}

func printAuthKeys(w io.Writer, ks []store.AuthKey) error {
	now := time.Now()
	tw := table(w, "PREFIX", "USER", "REUSABLE", "EPHEMERAL", "TAGS", "USES", "EXPIRES", "STATE")
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
}

func newAdminKeysExpireCmd(o *adminOpts) *cobra.Command {
	return o.keyEndCmd("expire PREFIX", "Make a pre-auth key unusable from now on (nodes it registered stay)",
		"expired key %s\n", (*adminapi.Client).ExpireKey)
}

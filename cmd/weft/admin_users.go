package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/store"
)

func newAdminUsersCmd(o *adminOpts) *cobra.Command {
	return groupCmd("users", "Create, list and delete users; set their role",
		&cobra.Command{
			Use:   "create NAME",
			Short: "Create a user (a-z 0-9 . _ @ -)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (store.User, error) {
					return c.CreateUser(ctx, args[0])
				}, func(w io.Writer, u store.User) error {
					fmt.Fprintf(w, "created user %s\n", u.Name)
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "list",
			Short: "List users",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return callShow(cmd.Context(), o, (*adminapi.Client).ListUsers, func(w io.Writer, us []store.User) error {
					tw := table(w, "ID", "NAME", "CREATED", "ROLE")
					for _, u := range us {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", u.ID, u.Name, when(u.CreatedAt, "-"), u.Role)
					}
					return tw.Flush()
				})
			},
		},
		&cobra.Command{
			Use:   "role NAME admin|member",
			Short: "Make a user an admin (administers the tailnet) or a member (sees and changes only their own nodes)",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (store.User, error) {
					return c.SetUserRole(ctx, args[0], args[1])
				}, func(w io.Writer, u store.User) error {
					fmt.Fprintf(w, "user %s is now %s\n", u.Name, u.Role)
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "delete NAME",
			Short: "Delete a user and their pre-auth keys (refused while they own nodes)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.call(cmd.Context(), func(c *adminapi.Client) error {
					if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
						return err
					}
					if !o.json {
						fmt.Fprintf(o.g.stdout, "deleted user %s\n", args[0])
					}
					return nil
				})
			},
		},
	)
}

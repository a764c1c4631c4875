package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
)

func newAdminUsersCmd(o *adminOpts) *cobra.Command {
	return groupCmd("users", "Create, list and delete users; set their role",
		&cobra.Command{
			Use:   "create NAME",
			Short: "Create a user (a-z 0-9 . _ @ -)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.call(cmd.Context(), func(c *adminapi.Client) error {
					u, err := c.CreateUser(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					if o.json {
						return o.printJSON(u)
					}
					fmt.Fprintf(o.g.stdout, "created user %s\n", u.Name)
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "list",
			Short: "List users",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.call(cmd.Context(), func(c *adminapi.Client) error {
					us, err := c.ListUsers(cmd.Context())
					if err != nil {
						return err
					}
					if o.json {
						return o.printJSON(us)
					}
					tw := table(o.g.stdout, "ID", "NAME", "CREATED", "ROLE")
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
				return o.call(cmd.Context(), func(c *adminapi.Client) error {
					u, err := c.SetUserRole(cmd.Context(), args[0], args[1])
					if err != nil {
						return err
					}
					if o.json {
						return o.printJSON(u)
					}
					fmt.Fprintf(o.g.stdout, "user %s is now %s\n", u.Name, u.Role)
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

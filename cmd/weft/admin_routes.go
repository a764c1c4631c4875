package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/store"
	"weft/internal/tailnet"
)

func newAdminRoutesCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "routes", Short: "List (the default), approve and reject subnet and exit-node routes", Args: cobra.NoArgs}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the routes nodes advertise and which are approved",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, (*adminapi.Client).ListRoutes, func(w io.Writer, rs []store.Route) error {
				tw := table(w, "NODE", "PREFIX", "ADVERTISED", "APPROVED", "ENABLED", "APPROVED BY")
				for _, r := range rs {
					by := "-"
					switch {
					case r.AutoApprovedBy != "":
						by = r.AutoApprovedBy
					case r.Approved:
						by = "admin"
					}
					fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%s\n", r.NodeName, r.Prefix, r.Advertised, r.Approved, r.Enabled(), by)
				}
				return tw.Flush()
			})
		},
	}

	type routeOp func(c *adminapi.Client, ctx context.Context, node string, ps []netip.Prefix) (adminapi.Node, error)
	routeCmd := func(verb, short string, op routeOp) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " NODE exit|CIDR[,CIDR...]",
			Short: short,
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				prefixes, err := adminapi.ParseRouteArg(args[1])
				if err != nil {
					return usageError{fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "store: invalid argument: "))}
				}
				return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (adminapi.Node, error) {
					return op(c, ctx, args[0], prefixes)
				}, func(w io.Writer, n adminapi.Node) error {
					fmt.Fprintf(w, "%s: routes in effect: %s\n", termText(n.Name), dashIfEmpty(joinAny(n.EnabledRoutes())))
					return nil
				})
			},
		}
	}
	cmd.RunE = list.RunE
	exit := fmt.Sprintf(" (\"exit\" = %v and %v)", tailnet.AllV4, tailnet.AllV6)
	cmd.AddCommand(list,
		routeCmd("approve", "Approve routes a node advertises"+exit,
			func(c *adminapi.Client, ctx context.Context, node string, ps []netip.Prefix) (adminapi.Node, error) {
				return c.ApproveRoutes(ctx, node, ps)
			}),
		routeCmd("reject", "Withdraw approval of a node's routes"+exit,
			func(c *adminapi.Client, ctx context.Context, node string, ps []netip.Prefix) (adminapi.Node, error) {
				return c.RejectRoutes(ctx, node, ps)
			}),
	)
	return cmd
}

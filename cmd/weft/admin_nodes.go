package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
)

func newAdminNodesCmd(o *adminOpts) *cobra.Command {
	cmd := groupCmd("nodes", "List, show, rename, tag, expire and delete nodes",
		newAdminNodesListCmd(o), newAdminNodesShowCmd(o), newAdminNodesHealthCmd(o), newAdminNodesPendingCmd(o), newAdminNodesApproveCmd(o))
	addAdminNodeActions(cmd, o)
	return cmd
}

func newAdminNodesListCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, (*adminapi.Client).ListNodes, func(w io.Writer, ns []adminapi.Node) error {
				return printNodeList(w, ns, time.Now())
			})
		},
	}
}

func newAdminNodesShowCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "show NODE",
		Short: "Show one node, by name or ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (adminapi.Node, error) {
				return c.GetNode(ctx, args[0])
			}, showNode)
		},
	}
}

// addAdminNodeActions adds the subcommands that change one node.
func addAdminNodeActions(cmd *cobra.Command, o *adminOpts) {
	nodeCmd := o.nodeCmd
	cmd.AddCommand(
		nodeCmd("rename NODE NEW-NAME", "Rename a node (the name must be a DNS label, unique)", 2,
			func(c *adminapi.Client, cmd *cobra.Command, args []string) (adminapi.Node, string, error) {
				n, err := c.RenameNode(cmd.Context(), args[0], args[1])
				return n, fmt.Sprintf("renamed node %d to %s", n.ID, n.Name), err
			}),
		nodeCmd("expire NODE", "Expire a node's key now: it must log in again with a pre-auth key", 1,
			func(c *adminapi.Client, cmd *cobra.Command, args []string) (adminapi.Node, string, error) {
				n, err := c.ExpireNode(cmd.Context(), args[0])
				return n, fmt.Sprintf("expired the key of node %s", n.Name), err
			}),
		nodeCmd("tag NODE tag:x [tag:y...]", "Make a node owned by tags instead of its user (its key then never expires)", -1,
			func(c *adminapi.Client, cmd *cobra.Command, args []string) (adminapi.Node, string, error) {
				n, err := c.TagNode(cmd.Context(), args[0], args[1:])
				return n, fmt.Sprintf("node %s is owned by %s", n.Name, strings.Join(n.Tags, ",")), err
			}),
		nodeCmd("delete NODE", "Delete a node; its addresses may later go to another node", 1,
			func(c *adminapi.Client, cmd *cobra.Command, args []string) (adminapi.Node, string, error) {
				n, err := c.GetNode(cmd.Context(), args[0])
				if err != nil {
					return n, "", err
				}
				if err := c.DeleteNode(cmd.Context(), fmt.Sprint(n.ID)); err != nil {
					return n, "", err
				}
				return n, fmt.Sprintf("deleted node %s", n.Name), nil
			}),
	)
}

// nodeCmd makes a subcommand acting on one node (by name or ID) that
// prints the node afterwards, or done for people.
func (o *adminOpts) nodeCmd(use, short string, nargs int, act func(c *adminapi.Client, cmd *cobra.Command, args []string) (adminapi.Node, string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  nodeArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd.Context(), func(c *adminapi.Client) error {
				n, done, err := act(c, cmd, args)
				if err != nil {
					return err
				}
				if o.json {
					return o.printJSON(n)
				}
				fmt.Fprintln(o.g.stdout, done)
				return nil
			})
		},
	}
}

// nodeArgs is cobra.ExactArgs(n), or for n < 0 a node and at least one
// more argument.
func nodeArgs(n int) cobra.PositionalArgs {
	if n < 0 {
		return cobra.MinimumNArgs(2)
	}
	return cobra.ExactArgs(n)
}

func owner(n adminapi.Node) string {
	if len(n.Tags) > 0 {
		return strings.Join(n.Tags, ",")
	}
	return dashIfEmpty(n.User)
}

func online(n adminapi.Node) string {
	switch {
	case n.Online == nil:
		return "?"
	case *n.Online:
		return "yes"
	default:
		return "no"
	}
}

func expiry(n adminapi.Node, now time.Time) string {
	if n.KeyExpired(now) {
		return "expired " + when(n.KeyExpiry, "")
	}
	return when(n.KeyExpiry, "never")
}

// printNodeList prints the node table of `weft admin nodes list`. Names,
// OS strings and owners are what nodes sent; they are escaped (termText).
func printNodeList(w io.Writer, ns []adminapi.Node, now time.Time) error {
	tw := table(w, "ID", "NAME", "OWNER", "IPV4", "IPV6", "OS", "ONLINE", "LAST SEEN", "KEY EXPIRES")
	for _, n := range ns {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, termText(n.Name), termText(owner(n)), n.IPv4, n.IPv6,
			termText(dashIfEmpty(n.OS)), online(n), when(n.LastSeen, "-"), expiry(n, now))
	}
	return tw.Flush()
}

func showNode(w io.Writer, n adminapi.Node) error {
	tw := table(w, "ID:", fmt.Sprint(n.ID))
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("Name", termText(n.Name))
	row("Owner", termText(owner(n)))
	row("Hostname", termText(dashIfEmpty(n.Hostname)))
	row("OS", termText(dashIfEmpty(n.OS)))
	row("IPv4", n.IPv4)
	row("IPv6", n.IPv6)
	row("Online", online(n))
	row("Last seen", when(n.LastSeen, "-"))
	row("Ephemeral", n.Ephemeral)
	row("Machine key", n.MachineKey)
	row("Node key", n.NodeKey)
	row("Key expires", expiry(n, time.Now()))
	row("Disco key", n.DiscoKey)
	row("Home relay", n.HomeRegion)
	row("Endpoints", dashIfEmpty(joinAny(n.Endpoints)))
	row("Advertised routes", dashIfEmpty(joinAny(n.AdvertisedRoutes)))
	row("Approved routes", dashIfEmpty(joinAny(n.ApprovedRoutes)))
	row("Registered with key", dashIfEmpty(n.AuthKey))
	row("Created", when(n.CreatedAt, "-"))
	return tw.Flush()
}

func joinAny[T interface{ String() string }](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}

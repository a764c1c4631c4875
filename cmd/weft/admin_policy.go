package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// noPolicyMessage is what `weft admin policy get` says when no policy
// was ever set.
const noPolicyMessage = "no policy is set: every node may reach every other node on every port (see docs/acl.md, then weft admin policy set FILE)"

func newAdminPolicyCmd(o *adminOpts) *cobra.Command {
	return groupCmd("policy", "Show, check, set and list the tailnet's access policy (HuJSON, see docs/acl.md)",
		newAdminPolicyGetCmd(o), newAdminPolicySetCmd(o), newAdminPolicyCheckCmd(o), newAdminPolicyHistoryCmd(o))
}

func newAdminPolicyGetCmd(o *adminOpts) *cobra.Command {
	var version int64
	get := &cobra.Command{
		Use:   "get",
		Short: "Print the policy in force, or an old version with --version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (adminapi.PolicyReply, error) {
				return c.GetPolicy(ctx, version)
			}, func(w io.Writer, p adminapi.PolicyReply) error {
				if p.None {
					fmt.Fprintln(w, noPolicyMessage)
					return nil
				}
				fmt.Fprint(w, p.Body)
				if !strings.HasSuffix(p.Body, "\n") {
					fmt.Fprintln(w)
				}
				return nil
			})
		},
	}
	get.Flags().Int64Var(&version, "version", 0, "print this version (from weft admin policy history) instead of the one in force")
	return get
}

// readPolicyFile reads the policy file name; failing to is a usage error.
func readPolicyFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usageError{fmt.Errorf("reading the policy file: %w", err)}
	}
	return b, nil
}

func newAdminPolicySetCmd(o *adminOpts) *cobra.Command {
	return o.policyFileCmd("set FILE", "Check a policy file (syntax, names, tests) and put it in force; a refused one changes nothing",
		func(cmd *cobra.Command, c *adminapi.Client, file string, body []byte) error {
			p, err := c.SetPolicy(cmd.Context(), body)
			if err != nil {
				return o.policyRefused(file, "refused; the policy in force is unchanged", err)
			}
			if o.json {
				return o.printJSON(p)
			}
			fmt.Fprintf(o.g.stdout, "policy version %d is in force\n", p.Version)
			return nil
		})
}

func newAdminPolicyCheckCmd(o *adminOpts) *cobra.Command {
	return o.policyFileCmd("check FILE", "Check a policy file (syntax, names, tests) without putting it in force",
		func(cmd *cobra.Command, c *adminapi.Client, file string, body []byte) error {
			if err := c.CheckPolicy(cmd.Context(), body); err != nil {
				return o.policyRefused(file, "would be refused", err)
			}
			fmt.Fprintf(o.g.stdout, "%s: the policy is valid and its tests pass\n", file)
			return nil
		})
}

// policyFileCmd makes a subcommand that reads the policy file it is given
// and hands its body to act on the admin API.
func (o *adminOpts) policyFileCmd(use, short string, act func(cmd *cobra.Command, c *adminapi.Client, file string, body []byte) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readPolicyFile(args[0])
			if err != nil {
				return err
			}
			return o.call(cmd.Context(), func(c *adminapi.Client) error { return act(cmd, c, args[0], b) })
		},
	}
}

func newAdminPolicyHistoryCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "history",
		Short: "List every policy version that was put in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, (*adminapi.Client).PolicyHistory, func(w io.Writer, pvs []store.PolicyVersion) error {
				if len(pvs) == 0 {
					fmt.Fprintln(w, noPolicyMessage)
					return nil
				}
				tw := table(w, "VERSION", "SET AT", "SET BY", "BYTES", "")
				for i, pv := range pvs {
					mark := ""
					if i == len(pvs)-1 {
						mark = "in force"
					}
					by := pv.SetBy()
					if by == "" {
						by = "-"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", pv.Version, when(pv.CreatedAt, "-"), by, pv.Size, mark)
				}
				return tw.Flush()
			})
		},
	}
}

// policyRefused prints why the server refused a policy file, without the
// API's error class or a usage hint (the command was used right; the file
// is wrong), and exits 2. Other errors pass through.
func (o *adminOpts) policyRefused(file, what string, err error) error {
	if !errors.Is(err, store.ErrInvalid) {
		return err
	}
	msg := strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": ")
	msg = strings.TrimPrefix(msg, strings.TrimPrefix(store.ErrInvalid.Error(), "store: ")+": ")
	fmt.Fprintf(o.g.stderr, "weft: %s: %s:\n%s\n", file, what, msg)
	return exitError{2}
}

package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"weft/internal/localapi"
	"weft/internal/tailnet"
)

// prefsFlags are the routing flags `weft up` and `weft set` share. Only
// flags given on the command line become part of the edit.
type prefsFlags struct {
	advertiseExit bool
	routes        string
	snat          bool
	exitNode      string
	allowLAN      bool
	acceptRoutes  bool
	acceptDNS     bool
}

func (pf *prefsFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&pf.advertiseExit, "advertise-exit-node", false, "offer this node as an exit node for the tailnet (an admin approves it)")
	f.StringVar(&pf.routes, "advertise-routes", "", "subnets to offer to the tailnet, comma-separated (192.168.1.0/24,...); empty withdraws them")
	f.BoolVar(&pf.snat, "snat-subnet-routes", true, "masquerade traffic forwarded into advertised subnets (false: LAN hosts see tailnet addresses and must route "+tailnet.V4Range.String()+" back)")
	f.StringVar(&pf.exitNode, "exit-node", "", "send internet traffic through this peer (name or tailnet address); a,b for a failover list in order; auto for the fastest; --exit-node= stops")
	f.BoolVar(&pf.allowLAN, "exit-node-allow-lan-access", false, "keep the local LAN reachable directly while an exit node is in use")
	f.BoolVar(&pf.acceptRoutes, "accept-routes", false, "use subnet routes other nodes offer")
	f.BoolVar(&pf.acceptDNS, "accept-dns", true, "point this machine's DNS at weft's resolver (MagicDNS); false leaves the OS's DNS alone")
}

// edit turns the flags given in f into a PrefsEdit; nil when none was
// given. A malformed route is a usage error.
func (pf *prefsFlags) edit(f *pflag.FlagSet) (*localapi.PrefsEdit, error) {
	e := &localapi.PrefsEdit{}
	if f.Changed("advertise-exit-node") {
		e.AdvertiseExitNode = &pf.advertiseExit
	}
	if f.Changed("advertise-routes") {
		routes, err := parseRoutes(pf.routes)
		if err != nil {
			return nil, usageError{err}
		}
		e.AdvertiseRoutes = &routes
	}
	if f.Changed("snat-subnet-routes") {
		e.SNATSubnetRoutes = &pf.snat
	}
	if f.Changed("exit-node") {
		s := strings.TrimSpace(pf.exitNode)
		e.ExitNode = &s
	}
	if f.Changed("exit-node-allow-lan-access") {
		e.ExitNodeAllowLAN = &pf.allowLAN
	}
	if f.Changed("accept-routes") {
		e.AcceptRoutes = &pf.acceptRoutes
	}
	if f.Changed("accept-dns") {
		e.AcceptDNS = &pf.acceptDNS
	}
	if e.IsEmpty() {
		return nil, nil
	}
	return e, nil
}

// parseRoutes parses --advertise-routes (tailnet.ParseRoutes): subnets
// only, since the default routes are offered with --advertise-exit-node.
// An empty string is no routes.
func parseRoutes(s string) ([]netip.Prefix, error) {
	routes, err := tailnet.ParseRoutes(s)
	if err != nil {
		return nil, fmt.Errorf("--advertise-routes: %w", err)
	}
	for _, p := range routes {
		if err := tailnet.CheckSubnetRoute(p); err != nil {
			return nil, fmt.Errorf("--advertise-routes: %w", err)
		}
	}
	return routes, nil
}

func newSetCmd(g *globals) *cobra.Command {
	var pf prefsFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "set [flags]",
		Short: "Change routing preferences (exit node, advertised routes, accept routes) while up",
		Long: `weft set changes only the preferences given on the command line and puts them
into effect at once; everything else stays as it is. Examples:

  weft set --advertise-exit-node              offer this node as an exit node
  weft set --advertise-routes 192.168.1.0/24  offer a subnet (an admin approves it)
  weft set --exit-node busan                  send internet traffic through busan
  weft set --exit-node=busan,pc               busan, or pc while busan is away (failover)
  weft set --exit-node=auto                   the approved exit node that answers fastest
  weft set --exit-node=                       stop using an exit node
  weft set --accept-routes                    use other nodes' approved subnets`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			edit, err := pf.edit(cmd.Flags())
			if err != nil {
				return err
			}
			if edit == nil {
				return usageError{errors.New("set: nothing to change; give at least one flag (see weft set --help)")}
			}
			p, err := (&localapi.Client{Socket: g.socket}).EditPrefs(cmd.Context(), *edit)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, p)
			}
			printPrefs(g.stdout, p)
			return nil
		},
	}
	pf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the preferences now in force as JSON")
	return cmd
}

// printPrefs prints the routing preferences in force, one per line.
func printPrefs(w io.Writer, p *localapi.Prefs) {
	exit := p.ExitNode
	switch {
	case p.ExitNodeAuto:
		exit = "auto (fastest), now " + orNone(exit)
	case len(p.ExitNodeList) > 0:
		exit = "first of " + strings.Join(p.ExitNodeList, ", ") + " that works, now " + orNone(exit)
	}
	if exit == "" {
		exit = "none"
	} else if p.ExitNodeAllowLAN {
		exit += " (LAN stays direct)"
	}
	fmt.Fprintf(w, "exit node:          %s\n", exit)
	offer := []string{}
	if p.AdvertiseExitNode {
		offer = append(offer, "exit node")
	}
	for _, r := range p.AdvertiseRoutes {
		offer = append(offer, r.String())
	}
	if len(offer) == 0 {
		offer = append(offer, "nothing")
	}
	fmt.Fprintf(w, "offers:             %s\n", strings.Join(offer, ", "))
	if len(p.AdvertiseRoutes) > 0 && !p.SNATSubnetRoutes {
		fmt.Fprintln(w, "                    (subnet traffic keeps tailnet source addresses)")
	}
	fmt.Fprintf(w, "uses peers' routes: %v\n", p.AcceptRoutes)
	fmt.Fprintf(w, "uses tailnet DNS:   %v\n", p.AcceptDNS)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

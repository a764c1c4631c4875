package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/dnsconf"
	"weft/internal/wire"
)

// defaultDNSFile is what `weft admin dns get` prints for a tailnet whose
// DNS settings were never set: the defaults, as a file to edit.
const defaultDNSFile = `// weft DNS settings (HuJSON: comments and trailing commas allowed).
// These are the defaults; edit and apply with: weft admin dns set FILE
{
	"domain": "` + dnsconf.DefaultDomain + `",
	"magic_dns": true,
	// "nameservers": ["198.51.100.53"],
	// "split_dns": {"corp.example": ["198.51.100.80"]},
	// "search_domains": ["corp.example"],
	// "extra_records": [{"name": "db.` + dnsconf.DefaultDomain + `", "type": "A", "value": "100.64.0.9"}],
}
`

func newAdminDNSCmd(o *adminOpts) *cobra.Command {
	cmd := groupCmd("dns", "Show or set the tailnet's DNS settings (MagicDNS, nameservers, split DNS)")
	get := &cobra.Command{
		Use:   "get",
		Short: "Print the DNS settings file in effect (the defaults if never set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callShow(cmd.Context(), o, (*adminapi.Client).DNS, func(w io.Writer, rep adminapi.DNSReply) error {
				src := rep.Source
				if strings.TrimSpace(src) == "" {
					src = defaultDNSFile
				}
				fmt.Fprint(w, src)
				if !strings.HasSuffix(src, "\n") {
					fmt.Fprintln(w)
				}
				return nil
			})
		},
	}
	set := &cobra.Command{
		Use:   "set FILE",
		Short: "Replace the DNS settings with FILE (\"-\": standard input); a bad file is refused and the old settings kept",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := readSettingsFile(cmd, args[0])
			if err != nil {
				return err
			}
			// Checked here too, so the error names the file.
			if _, err := dnsconf.Parse(src); err != nil {
				return usageError{fmt.Errorf("%s: %s; the DNS settings were not changed",
					args[0], strings.TrimPrefix(err.Error(), "dnsconf: "))}
			}
			return callShow(cmd.Context(), o, func(c *adminapi.Client, ctx context.Context) (adminapi.DNSReply, error) {
				return c.SetDNS(ctx, src)
			}, func(w io.Writer, rep adminapi.DNSReply) error {
				fmt.Fprintf(w, "DNS settings set: %s\n", describeDNS(rep.Config))
				return nil
			})
		},
	}
	cmd.AddCommand(get, set)
	return cmd
}

func readSettingsFile(cmd *cobra.Command, path string) ([]byte, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), dnsconf.MaxFileSize+1))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("reading DNS settings: %w", err)}
	}
	return b, nil
}

// describeDNS says in one line what nodes will do.
func describeDNS(c wire.DNSConfig) string {
	if !c.MagicDNS {
		return fmt.Sprintf("MagicDNS off (domain %s): nodes leave their DNS alone", c.Domain)
	}
	up := "the resolvers each node's OS had before weft"
	if len(c.Nameservers) > 0 {
		up = joinAny(c.Nameservers)
	}
	return fmt.Sprintf("MagicDNS on, domain %s, upstream %s, %d split-DNS routes, %d extra records",
		c.Domain, up, len(c.Routes), len(c.ExtraRecords))
}

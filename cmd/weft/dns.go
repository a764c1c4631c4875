package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"weft/internal/localapi"
	"weft/internal/tailnet"
)

func newDNSCmd(g *globals) *cobra.Command {
	cmd := groupCmd("dns", "Show this node's MagicDNS state, or ask its resolver")
	status := statusViewCmd(g, "status", "Say what DNS is in effect on this node and how it was applied (resolved, resolv.conf or off)",
		"print as JSON", func(st *localapi.Status) any { return st.DNS }, printDNSStatus)
	var server string
	var tcp bool
	query := &cobra.Command{
		Use:   "query NAME [TYPE]",
		Short: "Ask this node's resolver (100.100.100.100) and print the answer like dig +short; an address asks for its name (PTR)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := dnsQuestion(args)
			if err != nil {
				return usageError{err}
			}
			return runDNSQuery(cmd.Context(), g, q, server, tcp)
		},
	}
	query.Flags().StringVar(&server, "server", netip.AddrPortFrom(tailnet.ResolverV4, 53).String(), "resolver to ask (IP:port)")
	query.Flags().BoolVar(&tcp, "tcp", false, "ask over TCP")
	cmd.AddCommand(status, query, newDNSRestoreCmd(g))
	return cmd
}

// dnsQuestion builds the question from NAME [TYPE]: TYPE defaults to A,
// or to PTR for an address (which is turned into its reverse name).
func dnsQuestion(args []string) (dns.Question, error) {
	name, typ := args[0], "A"
	if a, err := netip.ParseAddr(name); err == nil {
		rev, _ := dns.ReverseAddr(a.String())
		name, typ = rev, "PTR"
	}
	if len(args) == 2 {
		typ = strings.ToUpper(args[1])
	}
	t, ok := dns.StringToType[typ]
	if !ok {
		return dns.Question{}, fmt.Errorf("dns query: unknown record type %q (try A, AAAA, PTR, CNAME, TXT, MX)", args[1])
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return dns.Question{}, fmt.Errorf("dns query: %q is not a domain name", name)
	}
	return dns.Question{Name: dns.Fqdn(name), Qtype: t, Qclass: dns.ClassINET}, nil
}

func runDNSQuery(ctx context.Context, g *globals, q dns.Question, server string, tcp bool) error {
	if _, err := netip.ParseAddrPort(server); err != nil {
		return usageError{fmt.Errorf("dns query: --server %q is not IP:port", server)}
	}
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.RecursionDesired = true
	m.Question = []dns.Question{q}
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated && !tcp {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return fmt.Errorf("dns query: no answer from %s: %w; is the node up with MagicDNS on (`weft dns status`)?", server, err)
	}
	for _, rr := range r.Answer {
		fmt.Fprintln(g.stdout, shortAnswer(rr))
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("dns query: %s %s: %s", strings.TrimSuffix(q.Name, "."), dns.TypeToString[q.Qtype], dns.RcodeToString[r.Rcode])
	}
	return nil
}

// shortAnswer is a record's data as `dig +short` prints it.
func shortAnswer(rr dns.RR) string {
	h := rr.Header().String()
	return strings.TrimPrefix(rr.String(), h)
}

func printDNSStatus(w io.Writer, st *localapi.Status) {
	d := st.DNS
	if d == nil {
		fmt.Fprintln(w, "MagicDNS: off (the node is not up; `weft up` starts it)")
		return
	}
	if !d.MagicDNS {
		fmt.Fprintln(w, "MagicDNS: off (the tailnet turned it off, or its settings are not in yet)")
		return
	}
	how := map[string]string{
		"resolved":    "systemd-resolved, per-link DNS on the TUN",
		"resolv.conf": "/etc/resolv.conf (the original is restored on `weft down`)",
		"off":         "not applied: the OS's DNS is left alone (--accept-dns=false, or not supported here)",
	}[d.Mode]
	fmt.Fprintf(w, "MagicDNS:   on, domain %s\n", d.Domain)
	if len(d.Listen) > 0 {
		fmt.Fprintf(w, "resolver:   %s (port 53, UDP and TCP)\n", joinAny(d.Listen))
	} else {
		fmt.Fprintln(w, "resolver:   none listening (in userspace networking mode the SOCKS5 and HTTP proxies resolve tailnet names)")
	}
	fmt.Fprintf(w, "applied by: %s\n", how)
	up := "none (tailnet names only)"
	if len(d.Upstreams) > 0 {
		up = joinAny(d.Upstreams)
	}
	fmt.Fprintf(w, "upstream:   %s\n", up)
	for _, suffix := range slices.Sorted(maps.Keys(d.Routes)) {
		fmt.Fprintf(w, "split DNS:  %s -> %s\n", suffix, joinAny(d.Routes[suffix]))
	}
	if len(d.Search) > 0 {
		fmt.Fprintf(w, "search:     %s\n", strings.Join(d.Search, " "))
	}
	s := d.Stats
	fmt.Fprintf(w, "queries:    %d (%d tailnet, %d forwarded, %d cached, %d failed, %d malformed)\n",
		s.Queries, s.Local, s.Forwarded, s.Cached, s.Failed, s.Malformed)
	if d.Problem != "" {
		fmt.Fprintf(w, "problem:    %s\n", d.Problem)
	}
	if !d.Overwritten.IsZero() {
		fmt.Fprintf(w, "note:       something else rewrote the DNS configuration at %s; weft re-applied it\n", d.Overwritten.Local().Format(time.DateTime))
	}
}

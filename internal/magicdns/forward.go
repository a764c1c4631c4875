package magicdns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// forward sends q to the nameservers for name: those of the longest
// matching split-DNS route, else the upstreams. Answers are cached.
func (r *Resolver) forward(ctx context.Context, q *dns.Msg, c *compiled, name string) *dns.Msg {
	servers := c.ups
	for _, rt := range c.routes {
		if name == rt.suffix || strings.HasSuffix(name, "."+rt.suffix) {
			servers = rt.servers
			break
		}
	}
	if len(servers) == 0 {
		r.count(func(s *Stats) { s.Failed++ })
		return servfail(q)
	}
	qq := q.Question[0]
	do := false
	if opt := q.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	key := cacheKey{name: name, qtype: qq.Qtype, qclass: qq.Qclass, do: do, cd: q.CheckingDisabled}
	if m := r.cache.get(key, r.opts.Now()); m != nil {
		r.count(func(s *Stats) { s.Cached++ })
		return m
	}
	select {
	case r.inflight <- struct{}{}:
		defer func() { <-r.inflight }()
	default:
		// Queueing behind a slow or dead upstream would only make
		// every query slow; the client retries.
		r.count(func(s *Stats) { s.Failed++ })
		return servfail(q)
	}
	up := new(dns.Msg)
	up.SetQuestion(dns.Fqdn(name), qq.Qtype)
	up.Question[0].Qclass = qq.Qclass
	up.CheckingDisabled = q.CheckingDisabled
	up.SetEdns0(maxUDPSize, do)
	var lastErr error
	for _, s := range servers {
		m, err := r.exchange(ctx, up, s)
		if err != nil {
			lastErr = err
			continue
		}
		if m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused {
			lastErr = fmt.Errorf("%s answered %s", s, dns.RcodeToString[m.Rcode])
			continue
		}
		r.count(func(s *Stats) { s.Forwarded++ })
		r.cache.put(key, m, r.opts.Now())
		return m
	}
	r.log.Debug("upstream query failed", "name", name, "type", dns.TypeToString[qq.Qtype], "err", lastErr)
	r.count(func(s *Stats) { s.Failed++ })
	return servfail(q)
}

// exchange asks one server over UDP, and again over TCP when the answer
// came back truncated.
func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, server netip.AddrPort) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	resp, err := r.exchangeOver(ctx, "udp", m, server)
	if err == nil && resp.Truncated {
		resp, err = r.exchangeOver(ctx, "tcp", m, server)
	}
	return resp, err
}

func (r *Resolver) exchangeOver(ctx context.Context, network string, m *dns.Msg, server netip.AddrPort) (*dns.Msg, error) {
	conn, err := r.opts.Dial(ctx, network, server.String())
	if err != nil {
		return nil, fmt.Errorf("magicdns: dialing %s/%s: %w", server, network, err)
	}
	defer conn.Close()
	c := &dns.Client{Net: network, UDPSize: maxUDPSize}
	q := m.Copy()
	q.Id = dns.Id()
	resp, _, err := c.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: conn})
	if err != nil {
		return nil, fmt.Errorf("magicdns: asking %s/%s: %w", server, network, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) || resp.Question[0].Qtype != q.Question[0].Qtype {
		return nil, fmt.Errorf("magicdns: %s answered another question", server)
	}
	return resp, nil
}

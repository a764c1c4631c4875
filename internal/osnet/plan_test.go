package osnet

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func TestPlanFor(t *testing.T) {
	base := Config{
		Addresses:     prefixes("100.64.0.2/32", "fd7a:115c:a1e0::2/128"),
		TailnetRoutes: prefixes("100.64.0.0/10", "fd7a:115c:a1e0::/48"),
	}
	tests := []struct {
		name       string
		cfg        Config
		wantRoutes []netip.Prefix
		wantErr    error
	}{
		{"down", Config{}, nil, nil},
		{"tailnet only", base, prefixes("100.64.0.0/10", "fd7a:115c:a1e0::/48"), nil},
		{"subnet routes, default routes dropped", func() Config {
			c := base
			c.SubnetRoutes = prefixes("192.168.7.0/24", "0.0.0.0/0", "192.168.7.9/24")
			return c
		}(), prefixes("100.64.0.0/10", "192.168.7.0/24", "fd7a:115c:a1e0::/48"), nil},
		{"exit node: split default routes", func() Config {
			c := base
			c.ExitNode = true
			return c
		}(), prefixes("0.0.0.0/1", "100.64.0.0/10", "128.0.0.0/1", "::/1", "8000::/1", "fd7a:115c:a1e0::/48"), nil},
		{"exit node allowing the LAN needs no extra route", func() Config {
			c := base
			c.ExitNode, c.ExitNodeAllowLAN = true, true
			return c
		}(), prefixes("0.0.0.0/1", "100.64.0.0/10", "128.0.0.0/1", "::/1", "8000::/1", "fd7a:115c:a1e0::/48"), nil},
		{"advertising an exit node needs userspace mode", func() Config {
			c := base
			c.AdvertiseExitNode = true
			return c
		}(), nil, ErrForwardingNeedsUserspace},
		{"advertising routes needs userspace mode", func() Config {
			c := base
			c.AdvertiseRoutes = prefixes("10.1.0.0/16")
			return c
		}(), nil, ErrForwardingNeedsUserspace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planFor(tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("planFor err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(p.Routes) != len(tt.wantRoutes) || (len(p.Routes) > 0 && !reflect.DeepEqual(p.Routes, tt.wantRoutes)) {
				t.Errorf("routes = %v, want %v", p.Routes, tt.wantRoutes)
			}
			if len(p.Addresses) != len(tt.cfg.Addresses) {
				t.Errorf("addresses = %v, want %v", p.Addresses, tt.cfg.Addresses)
			}
		})
	}
	if _, err := planFor(Config{Addresses: prefixes("100.64.0.0/24")}); err == nil {
		t.Error("planFor accepted an address that is a whole network")
	}
}

func TestSplitRoutesCoverTheDefaultRoutes(t *testing.T) {
	for _, a := range []string{"0.0.0.1", "127.255.255.255", "128.0.0.0", "203.0.113.9", "255.255.255.255", "::1", "2001:db8::1", "ffff::1"} {
		addr := netip.MustParseAddr(a)
		n := 0
		for _, p := range splitDefaultRoutes {
			if p.Contains(addr) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s is in %d of the split default routes, want exactly 1", a, n)
		}
	}
}

func TestMacCommands(t *testing.T) {
	have := hostPlan{
		Addresses: prefixes("100.64.0.2/32", "fd7a:115c:a1e0::2/128"),
		Routes:    prefixes("100.64.0.0/10", "192.168.7.0/24"),
	}
	want := hostPlan{
		Addresses: prefixes("100.64.0.3/32", "fd7a:115c:a1e0::2/128"),
		Routes:    prefixes("0.0.0.0/1", "100.64.0.0/10", "::/1"),
	}
	got := macCommands("utun7", have, want)
	wantCmds := []string{
		"/sbin/route -q -n delete -inet 192.168.7.0/24 -interface utun7",
		"/sbin/ifconfig utun7 inet 100.64.0.2 -alias",
		"/sbin/ifconfig utun7 inet 100.64.0.3 100.64.0.3 alias",
		"/sbin/route -q -n add -inet 0.0.0.0/1 -interface utun7",
		"/sbin/route -q -n add -inet6 ::/1 -interface utun7",
	}
	var gotCmds []string
	for _, c := range got {
		gotCmds = append(gotCmds, strings.Join(c, " "))
	}
	if !reflect.DeepEqual(gotCmds, wantCmds) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(gotCmds, "\n"), strings.Join(wantCmds, "\n"))
	}
	if c := macCommands("utun7", want, want); len(c) != 0 {
		t.Errorf("no change gave commands %v", c)
	}
	// From nothing: an IPv6 address gets its /128 prefix length.
	up := macCommands("utun7", hostPlan{}, hostPlan{Addresses: prefixes("fd7a:115c:a1e0::2/128")})
	if len(up) != 1 || strings.Join(up[0], " ") != "/sbin/ifconfig utun7 inet6 fd7a:115c:a1e0::2 prefixlen 128 alias" {
		t.Errorf("IPv6 address commands = %v", up)
	}
}

func TestBlocksLeaks(t *testing.T) {
	tests := []struct {
		cfg  Config
		want bool
	}{
		{Config{}, false},
		{Config{ExitNode: true}, true},
		{Config{ExitNode: true, ExitNodeAllowLAN: true}, false},
		{Config{SubnetRoutes: prefixes("10.0.0.0/8")}, false},
	}
	for _, tt := range tests {
		if got := blocksLeaks(tt.cfg); got != tt.want {
			t.Errorf("blocksLeaks(%+v) = %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

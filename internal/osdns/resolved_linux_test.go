package osdns

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/godbus/dbus/v5"
)

type fakeBus struct{ calls []string }

func (f *fakeBus) CallWithContext(ctx context.Context, method string, flags dbus.Flags, args ...any) *dbus.Call {
	f.calls = append(f.calls, fmt.Sprint(method, args))
	return &dbus.Call{}
}

func TestResolvedCalls(t *testing.T) {
	bus := &fakeBus{}
	r := &resolved{link: "lo", bus: bus}
	cfg := Config{
		Nameservers:   []netip.Addr{netip.MustParseAddr("100.100.100.100")},
		SearchDomains: []string{"weft.internal"},
		MatchDomains:  []string{"corp.example"},
	}
	if err := r.Set(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.All = true
	r.Set(cfg)
	r.Restore()
	r.Restore()
	want := []string{
		"org.freedesktop.resolve1.Manager.SetLinkDNS[1 [{2 [100 100 100 100]}]]",
		"org.freedesktop.resolve1.Manager.SetLinkDomains[1 [{weft.internal false} {corp.example true}]]",
		"org.freedesktop.resolve1.Manager.SetLinkDefaultRoute[1 false]",
		"org.freedesktop.resolve1.Manager.SetLinkDNS[1 [{2 [100 100 100 100]}]]",
		"org.freedesktop.resolve1.Manager.SetLinkDomains[1 [{weft.internal false} {corp.example true} {. true}]]",
		"org.freedesktop.resolve1.Manager.SetLinkDefaultRoute[1 true]",
		"org.freedesktop.resolve1.Manager.RevertLink[1]",
	}
	if fmt.Sprint(bus.calls) != fmt.Sprint(want) {
		t.Fatalf("calls:\n%q\nwant\n%q", bus.calls, want)
	}
}

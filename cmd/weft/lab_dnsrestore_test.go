//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
	"weft/internal/tailnet"
)

// TestLabDNSRestoreAfterKill9: busan's daemon manages its resolv.conf (a
// per-namespace file, as `ip netns exec` gives) and is killed with
// SIGKILL, which leaves the file pointing at 100.100.100.100 with no
// resolver behind it: names stop resolving. `weft dns restore` (what the
// systemd unit runs after every stop) puts the original back byte for
// byte and removes the resolver's address from lo, and a lab name
// resolves again through the original resolver. It refuses while a
// daemon runs. The host's /etc/resolv.conf is untouched throughout.
func TestLabDNSRestoreAfterKill9(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab, public := startDNSLab(t)
	busan := lab.Node("busan")
	original := writePreWeftResolvConf(t, lab, "busan")
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{Hosts: []string{"busan"}})
	read := func() []byte { return readResolvConf(lab, "busan") }
	err := scenario.WaitFor(ctx, 20*time.Second, "busan's resolv.conf pointing at weft", func() (bool, error) {
		return bytes.Contains(read(), []byte("nameserver 100.100.100.100\n")), nil
	})
	if err != nil {
		t.Fatalf("%v: %q", err, read())
	}
	// resolve asks the OS's resolver (glibc, reading the namespace's
	// /etc/resolv.conf) for name.
	resolve := func(name string) (string, error) {
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		out, err := busan.Exec(rctx, "getent", "ahostsv4", name)
		return string(out), err
	}
	if out, err := resolve("before.example.com"); err != nil || !strings.Contains(out, "198.51.100.7") {
		t.Fatalf("through weft's resolver before the kill: %v %q", err, out)
	}
	restore := func() (string, error) {
		out, err := busan.Exec(ctx, labtest.WeftBinary(t), "dns", "restore", "--state-dir", tn.StateDir("busan"))
		return strings.TrimSpace(string(out)), err
	}
	if out, err := restore(); err == nil || !strings.Contains(out, "daemon runs") {
		t.Errorf("weft dns restore with the daemon running: %v %q; want a refusal", err, out)
	}

	if err := tn.KillDaemon("busan"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(read(), []byte("nameserver 100.100.100.100\n")) {
		t.Fatalf("after kill -9 the file is %q; the test expects weft's left behind", read())
	}
	if out, err := resolve("dead.example.com"); err == nil {
		t.Fatalf("a name resolved with the daemon dead and resolv.conf on 100.100.100.100: %q", out)
	}
	if out, err := restore(); err != nil || out != "DNS restored" {
		t.Fatalf("weft dns restore after kill -9: %v %q", err, out)
	}
	if got := read(); !bytes.Equal(got, original) {
		t.Fatalf("after weft dns restore: %q, want %q", got, original)
	}
	if out, err := resolve("after.example.com"); err != nil || !strings.Contains(out, "198.51.100.7") {
		t.Fatalf("through the original resolver after restore: %v %q", err, out)
	}
	if src := public.sources("after.example.com"); len(src) == 0 || src[0] != lab.Node("r-busan").WANAddr {
		t.Errorf("the lab DNS server saw after.example.com from %v, want busan's router", src)
	}
	err = busan.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == tailnet.ResolverV4 {
				return fmt.Errorf("%v is still on lo after restore", ip)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if out, err := restore(); err != nil || out != "nothing to restore" {
		t.Errorf("a second weft dns restore: %v %q", err, out)
	}
}

//go:build linux

package netlab_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"weft/internal/netlab"
)

// TestResolvConfIsPerNode: a lab process sees its node's resolv.conf as
// /etc/resolv.conf, and what it writes there lands in the node's file
// while the host's /etc/resolv.conf stays byte for byte as it was.
func TestResolvConfIsPerNode(t *testing.T) {
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Skipf("the host has no /etc/resolv.conf to guard: %v", err)
	}
	l := upLab(t, netlab.SeedTopology())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	busan, mac := l.Node("busan"), l.Node("mac")
	out, err := busan.Exec(ctx, "cat", "/etc/resolv.conf")
	if err != nil || !strings.Contains(string(out), "busan's resolv.conf in the lab") {
		t.Fatalf("busan sees %q, %v", out, err)
	}
	if _, err := busan.Exec(ctx, "sh", "-c", "echo 'nameserver 198.51.100.53' > /etc/resolv.conf"); err != nil {
		t.Fatal(err)
	}
	p, err := busan.ResolvConf()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "nameserver 198.51.100.53\n" {
		t.Fatalf("busan's file holds %q", b)
	}
	if out, _ := mac.Exec(ctx, "cat", "/etc/resolv.conf"); strings.Contains(string(out), "198.51.100.53") {
		t.Fatalf("mac sees busan's write: %q", out)
	}
	// A long-running process too.
	proc, err := mac.Start(ctx, "writer", "sh", "-c", "echo 'nameserver 100.100.100.100' > /etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Wait(); err != nil {
		t.Fatalf("%v: %s", err, proc.Logs())
	}
	if now, _ := os.ReadFile("/etc/resolv.conf"); !bytes.Equal(now, host) {
		t.Fatalf("the host's /etc/resolv.conf changed: %q, was %q", now, host)
	}
}

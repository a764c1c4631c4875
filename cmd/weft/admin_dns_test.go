package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/adminapi"
	"weft/internal/dnsconf"
	"weft/internal/store"
)

func TestAdminDNS(t *testing.T) {
	e := startAdmin(t)
	// Never set: the defaults, as a file that itself parses.
	out := e.ok("dns", "get")
	if !strings.Contains(out, `"domain": "weft.internal"`) {
		t.Fatalf("dns get on a new tailnet:\n%s", out)
	}
	if cfg, err := dnsconf.Parse([]byte(out)); err != nil || cfg.Domain != dnsconf.DefaultDomain || !cfg.MagicDNS {
		t.Fatalf("the printed defaults parse as %+v, %v", cfg, err)
	}

	good := "// ours\n{\"domain\": \"corp.internal\", \"nameservers\": [\"198.51.100.53\"],}\n"
	file := filepath.Join(t.TempDir(), "dns.hujson")
	os.WriteFile(file, []byte(good), 0o600)
	if out := e.ok("dns", "set", file); !strings.Contains(out, "domain corp.internal, upstream 198.51.100.53:53") {
		t.Fatalf("dns set printed %q", out)
	}
	if out := e.ok("dns", "get"); out != good {
		t.Fatalf("dns get = %q, want the file as set, comments kept: %q", out, good)
	}

	bad := "{\"domain\": \"corp.internal\",\n \"nameservers\": [\"not-an-ip\"]}"
	os.WriteFile(file, []byte(bad), 0o600)
	code, _, errs := e.admin("dns", "set", file)
	if code != 2 || !strings.Contains(errs, "line 2, column 18") || !strings.Contains(errs, "not changed") {
		t.Fatalf("dns set of a bad file: exit %d, %q", code, errs)
	}
	// The server refuses it too (a client that skips the check), and
	// the old file stays.
	c := adminapi.NewClient(adminapi.SocketPath(e.dir))
	defer c.Close()
	if _, err := c.SetDNS(context.Background(), []byte(bad)); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "line 2, column 18") {
		t.Fatalf("server took a bad file: %v", err)
	}
	if out := e.ok("dns", "get"); out != good {
		t.Fatalf("after a refused set, dns get = %q, want %q", out, good)
	}
	if code, _, _ := e.admin("dns", "set", filepath.Join(t.TempDir(), "missing")); code != 2 {
		t.Fatalf("dns set of a missing file: exit %d, want 2", code)
	}
}

package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/localapi"
	"weft/internal/node"
	"weft/internal/nodestate"
	"weft/internal/tstest/controltest"
)

// TestDamagedStateFileClearErrorAndCleanRelogin is the standing case "a
// corrupt or truncated node state file → a clear error and a clean
// re-login path, never a crash loop": the daemon starts anyway, says what
// was damaged and where it was moved, and `weft up --auth-key` works.
func TestDamagedStateFileClearErrorAndCleanRelogin(t *testing.T) {
	for _, tt := range []struct{ name, file, content string }{
		{"truncated prefs", "prefs.json", `{"server_url":"http://x","regis`},
		{"garbage prefs", "prefs.json", "\x00\x01\x02"},
		{"truncated machine key", "machine.key", "privkey:12"},
		{"garbage disco key", "disco.key", "not a key"},
		{"truncated netmap", "netmap.json", `{"self":{"id":1,`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := controltest.New(t)
			dir := filepath.Join(t.TempDir(), "state")
			st, err := nodestate.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			d, err := node.NewDaemon(node.DaemonConfig{State: st})
			if err != nil {
				t.Fatalf("the daemon does not start with a damaged %s (a service would restart it in a loop): %v", tt.file, err)
			}
			defer d.Close()
			d.Start()
			ctx := context.Background()
			s, err := d.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tt.file != "netmap.json" {
				if !strings.Contains(s.LastError, tt.file) || !strings.Contains(s.LastError, "damaged") || !strings.Contains(s.LastError, "weft up") {
					t.Fatalf("status after a damaged %s: %q, want what was damaged and what to run", tt.file, s.LastError)
				}
				if _, err := os.Stat(filepath.Join(dir, tt.file+".damaged")); err != nil {
					t.Fatalf("the damaged file was not kept aside: %v", err)
				}
			}
			s, err = d.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: e.AuthKey(false), Hostname: "pc"})
			if err != nil {
				t.Fatalf("up after a damaged %s: %v", tt.file, err)
			}
			if s.BackendState != localapi.StateRunning {
				t.Fatalf("after up: %s (%s)", s.BackendState, s.LastError)
			}
		})
	}
}

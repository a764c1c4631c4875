package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"weft/internal/localapi"
	"weft/internal/tstest"
)

// TestSetAndExitNodeCLI runs a server and two control-plane-only daemons
// in-process and drives the routing commands as a user would: offer,
// approval, choosing and clearing the exit node, and the errors for bad
// input.
func TestSetAndExitNodeCLI(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "server")
	url := freeURL(t)
	startServer(t, url, dataDir)
	tstest.Eventually(t, "admin socket", func() bool { _, err := os.Stat(filepath.Join(dataDir, "admin.sock")); return err == nil })
	admin := adminCLI(t, dataDir)
	admin("users", "create", "alice")
	key := admin("keys", "create", "--user", "alice", "--reusable")
	sock := map[string]string{}
	for _, host := range []string{"busan", "mac"} {
		sock[host], _ = startDaemon(t, dir, host)
	}
	cli := func(host string, args ...string) (string, string, int) {
		return weft(t, append([]string{"--socket", sock[host]}, args...)...)
	}
	if _, errs, code := cli("busan", "up", "--server", url, "--auth-key", key, "--hostname", "busan", "--advertise-exit-node"); code != 0 {
		t.Fatalf("up busan: %s", errs)
	}
	if _, errs, code := cli("mac", "up", "--server", url, "--auth-key", key, "--hostname", "mac"); code != 0 {
		t.Fatalf("up mac: %s", errs)
	}
	if out := admin("routes", "list"); !strings.Contains(out, "0.0.0.0/0") {
		t.Fatalf("routes list lacks busan's offer:\n%s", out)
	}
	if out, _, _ := cli("mac", "exit-node", "list"); !strings.Contains(out, "No exit nodes") {
		t.Errorf("an unapproved offer is listed:\n%s", out)
	}

	tests := []struct {
		name     string
		host     string
		args     []string
		code     int
		contains string // in stdout+stderr
	}{
		{"unapproved exit node", "mac", []string{"set", "--exit-node", "busan"}, 1, "weft admin routes approve busan exit"},
		{"nothing to set", "mac", []string{"set"}, 2, "nothing to change"},
		{"bad CIDR", "busan", []string{"set", "--advertise-routes", "192.168.1.0/33"}, 2, "not a CIDR prefix"},
		{"host bits", "busan", []string{"set", "--advertise-routes", "192.168.1.1/24"}, 2, "did you mean 192.168.1.0/24"},
		{"default route", "busan", []string{"set", "--advertise-routes", "0.0.0.0/0"}, 2, "--advertise-exit-node"},
		{"bare address", "busan", []string{"set", "--advertise-routes", "192.168.1.1"}, 2, "is an address"},
		{"unknown exit node", "mac", []string{"set", "--exit-node", "seoul"}, 1, "exit-node list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := cli(tt.host, tt.args...)
			if code != tt.code || !strings.Contains(out+errs, tt.contains) {
				t.Fatalf("weft %v: exit %d, output %q; want exit %d saying %q", tt.args, code, out+errs, tt.code, tt.contains)
			}
		})
	}

	admin("routes", "approve", "busan", "exit")
	tstest.Eventually(t, "busan listed as exit node", func() bool {
		out, _, _ := cli("mac", "exit-node", "list")
		return strings.Contains(out, "busan") && strings.Contains(out, "yes")
	})
	out, errs, code := cli("mac", "set", "--exit-node", "busan", "--exit-node-allow-lan-access")
	if code != 0 || !strings.Contains(out, "busan (LAN stays direct)") {
		t.Fatalf("set --exit-node busan: exit %d: %s %s", code, out, errs)
	}
	if out, _, _ := cli("mac", "exit-node", "list"); !strings.Contains(out, "*  busan") {
		t.Errorf("the chosen exit node is not marked:\n%s", out)
	}
	if out, _, code := cli("mac", "set", "--exit-node="); code != 0 || !strings.Contains(out, "exit node:          none") {
		t.Errorf("set --exit-node=: exit %d: %s", code, out)
	}
	if out, _, _ := cli("mac", "exit-node", "list"); strings.Contains(out, "*") {
		t.Errorf("a cleared exit node is still marked:\n%s", out)
	}
}

// TestExitNodeCheck asks a local echo service both ways. Without an exit
// node both answers are the same; the marked socket needs root.
func TestExitNodeCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("weft exit-node check marks a socket and needs root")
	}
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.RemoteAddr[:strings.LastIndexByte(r.RemoteAddr, ':')]
		fmt.Fprintln(w, host)
	}))
	defer echo.Close()
	out, errs, code := weft(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "exit-node", "check", "--url", echo.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.Count(out, "127.0.0.1") != 3 || !strings.Contains(out, "no exit node") || !strings.Contains(out, "Asked "+echo.URL+":") {
		t.Errorf("output:\n%s", out)
	}
	// Without a URL it asks the node's control server, and says so.
	var asked []string
	var mu sync.Mutex
	ctrl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		fmt.Fprintln(w, "127.0.0.1")
	}))
	defer ctrl.Close()
	sock := serveFake(t, &statusBackend{st: &localapi.Status{BackendState: localapi.StateRunning, ServerURL: ctrl.URL}})
	out, errs, code = weft(t, "--socket", sock, "exit-node", "check")
	if code != 0 || !strings.Contains(out, "Asked "+ctrl.URL+"/whoami:") || len(asked) != 2 || asked[0] != "/whoami" {
		t.Errorf("check without a URL: exit %d, asked %q, stderr %q, output:\n%s", code, asked, errs, out)
	}
	// With neither a URL nor a node that is up, it says what to pass.
	if _, errs, code := weft(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "exit-node", "check"); code != 2 || !strings.Contains(errs, "pass --url") {
		t.Errorf("check with nothing to ask: exit %d, stderr %q", code, errs)
	}
}

// statusBackend is a daemon that only answers status.
type statusBackend struct{ st *localapi.Status }

func (b *statusBackend) Up(context.Context, localapi.UpRequest) (*localapi.Status, error) {
	return nil, errors.New("not here")
}
func (b *statusBackend) Down(context.Context) error   { return nil }
func (b *statusBackend) Logout(context.Context) error { return nil }
func (b *statusBackend) Status(context.Context) (*localapi.Status, error) {
	return b.st, nil
}

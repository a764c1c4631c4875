package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/tstest"
)

// background runs `weft args...` until the test ends.
func background(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &tstest.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, logs, logs) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("weft %s exited %d: %s", args[0], code, logs.String())
				}
			case <-time.After(15 * time.Second):
				t.Errorf("weft %s did not stop", args[0])
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeURL is http://127.0.0.1:PORT on a port free at the time.
func freeURL(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
}

// startServer runs `weft server` in-process at url (from freeURL) with
// its data in dataDir, without STUN or metrics listeners and with extra
// flags, and waits until it answers /healthz. stop ends it; the test's
// end does too.
func startServer(t *testing.T, url, dataDir string, extra ...string) (stop func()) {
	t.Helper()
	stop = background(t, append([]string{"server", "--listen", strings.TrimPrefix(url, "http://"), "--data-dir", dataDir,
		"--server-url", url, "--stun-listen=", "--metrics-listen="}, extra...)...)
	awaitHealthz(t, url)
	return stop
}

// startDaemon runs a control-plane-only daemon (weft daemon
// --no-data-plane) in-process with its state in dir/name, its socket at
// dir/name.sock and extra flags, waits for the socket, and returns its
// path and stop.
func startDaemon(t *testing.T, dir, name string, extra ...string) (sock string, stop func()) {
	t.Helper()
	sock = filepath.Join(dir, name+".sock")
	stop = background(t, append([]string{"--socket", sock, "daemon", "--no-data-plane", "--state-dir", filepath.Join(dir, name)}, extra...)...)
	tstest.Eventually(t, name+" socket", func() bool { _, err := os.Stat(sock); return err == nil })
	return sock, stop
}

func weft(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// awaitHealthz waits until the server at url answers GET /healthz with
// 200 OK.
func awaitHealthz(t *testing.T, url string) {
	t.Helper()
	tstest.Eventually(t, "server /healthz at "+url, func() bool {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
}

// adminCLI returns a function that runs `weft admin --data-dir dataDir
// args...` in-process and returns its standard output without the
// surrounding space; a non-zero exit fails the test.
func adminCLI(t *testing.T, dataDir string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, errs, code := weft(t, append([]string{"admin", "--data-dir", dataDir}, args...)...)
		if code != 0 {
			t.Fatalf("weft admin %v: exit %d: %s", args, code, errs)
		}
		return strings.TrimSpace(out)
	}
}

// TestControlPlaneVerticalSlice runs a server and two daemons in-process,
// brings both up with pre-auth keys, and checks what the CLI shows and
// which errors reach `weft up`.
func TestControlPlaneVerticalSlice(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "server")
	url := freeURL(t)
	stopServer := startServer(t, url, dataDir)
	st, err := os.Stat(filepath.Join(dataDir, "server.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("server.key: %v %v", err, st)
	}

	// Keys come from `weft admin`, through the server's admin socket.
	admin := adminCLI(t, dataDir)
	admin("users", "create", "alice")
	reusable := admin("keys", "create", "--user", "alice", "--reusable")
	oneOff := admin("keys", "create", "--user", "alice")

	sockets := map[string]string{}
	stops := map[string]func(){}
	for _, host := range []string{"busan", "mac"} {
		sockets[host], stops[host] = startDaemon(t, dir, host)
	}

	if out, errs, code := weft(t, "--socket", sockets["busan"], "up", "--server", url, "--auth-key", oneOff, "--hostname", "busan"); code != 0 {
		t.Fatalf("up busan: exit %d: %s %s", code, out, errs)
	}
	// The one-off key is spent: the server's refusal reaches the user.
	_, errs, code := weft(t, "--socket", sockets["mac"], "up", "--server", url, "--auth-key", oneOff, "--hostname", "mac")
	if code == 0 || !strings.Contains(errs, "already used") {
		t.Fatalf("up with a used key: exit %d, stderr %q", code, errs)
	}
	_, errs, code = weft(t, "--socket", sockets["mac"], "up", "--server", url, "--auth-key", "bogus", "--hostname", "mac")
	if code == 0 || !strings.Contains(errs, "invalid auth key") {
		t.Fatalf("up with a bogus key: exit %d, stderr %q", code, errs)
	}
	if out, errs, code := weft(t, "--socket", sockets["mac"], "up", "--server", url, "--auth-key", reusable, "--hostname", "mac"); code != 0 {
		t.Fatalf("up mac: exit %d: %s %s", code, out, errs)
	}

	status := func(host string) *localapi.Status {
		out, errs, code := weft(t, "--socket", sockets[host], "status", "--json")
		if code != 0 {
			t.Fatalf("status %s: %s", host, errs)
		}
		var st localapi.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v: %s", err, out)
		}
		return &st
	}
	seesOnline := func(host, peer string) bool {
		st := status(host)
		for _, p := range st.Peers {
			if p.Name == peer && p.Online {
				return true
			}
		}
		return false
	}
	tstest.Eventually(t, "busan sees mac", func() bool { return seesOnline("busan", "mac") })
	tstest.Eventually(t, "mac sees busan", func() bool { return seesOnline("mac", "busan") })
	before := status("mac").Self

	// An administrator's rename reaches the peers' maps.
	admin("nodes", "rename", "mac", "macbook")
	tstest.Eventually(t, "busan sees the rename", func() bool { return seesOnline("busan", "macbook") })
	admin("nodes", "rename", "macbook", "mac")
	tstest.Eventually(t, "busan sees the name back", func() bool { return seesOnline("busan", "mac") })

	out, _, _ := weft(t, "--socket", sockets["busan"], "status")
	for _, want := range []string{"NAME", "busan", "mac", "online", "100.64."} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	// A daemon restart reconnects by itself.
	stops["mac"]()
	tstest.Eventually(t, "busan sees mac offline", func() bool { return !seesOnline("busan", "mac") })
	startDaemon(t, dir, "mac")
	tstest.Eventually(t, "mac back after daemon restart", func() bool { return seesOnline("busan", "mac") })

	// A server restart: both come back with the same addresses.
	stopServer()
	startServer(t, url, dataDir)
	tstest.Eventually(t, "mac reconnects after server restart", func() bool {
		st := status("mac")
		return st.BackendState == localapi.StateRunning && seesOnline("mac", "busan")
	})
	after := status("mac").Self
	if fmt.Sprint(after.Addresses) != fmt.Sprint(before.Addresses) || after.Name != before.Name {
		t.Errorf("mac changed across server restart: %v %s -> %v %s", before.Addresses, before.Name, after.Addresses, after.Name)
	}

	// down is remembered; logout forgets.
	if _, errs, code := weft(t, "--socket", sockets["mac"], "down"); code != 0 {
		t.Fatal(errs)
	}
	if st := status("mac"); st.BackendState != localapi.StateStopped {
		t.Errorf("after down: %s", st.BackendState)
	}
	tstest.Eventually(t, "busan sees mac offline after down", func() bool { return !seesOnline("busan", "mac") })
	if _, errs, code := weft(t, "--socket", sockets["mac"], "logout"); code != 0 {
		t.Fatal(errs)
	}
	if st := status("mac"); st.BackendState != localapi.StateNeedsLogin || st.Self != nil {
		t.Errorf("after logout: %+v", st)
	}
}

func TestStatusWithoutDaemonSaysWhatToDo(t *testing.T) {
	_, errs, code := weft(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "status")
	if code != 1 || !strings.Contains(errs, "weft daemon") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

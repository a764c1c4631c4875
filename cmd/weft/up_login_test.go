package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/tstest"
)

// TestUpInteractiveLoginApprovedByAdmin runs a server, a daemon and
// `weft up` without a pre-auth key as real processes: up prints a login
// URL and waits; the URL's page tells what an administrator runs; `weft
// admin nodes pending` lists the machine; `weft admin nodes approve CODE
// --user alice` lets it in, and up finishes with the node registered as
// alice's. The URL is single-use: afterwards its page and a second
// approval are refused. up is given two servers, the first unreachable:
// the login starts at the one that answers.
func TestUpInteractiveLoginApprovedByAdmin(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "server")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	url := "http://" + addr
	startWeftProcess(t, "server", "--listen", addr, "--data-dir", dataDir, "--server-url", url, "--stun-listen=", "--metrics-listen=")
	awaitHealthz(t, url)
	admin := func(args ...string) (string, string, int) {
		return weft(t, append([]string{"admin", "--data-dir", dataDir}, args...)...)
	}
	if _, errs, code := admin("users", "create", "alice"); code != 0 {
		t.Fatal(errs)
	}
	sock := filepath.Join(dir, "node.sock")
	startWeftProcess(t, "--socket", sock, "daemon", "--no-data-plane", "--state-dir", filepath.Join(dir, "node"))
	tstest.Eventually(t, "daemon socket", func() bool { _, err := os.Stat(sock); return err == nil })

	up := exec.Command(os.Args[0], "-test.run=^TestHelperWeftProcess$")
	up.Env = append(os.Environ(), "WEFT_HELPER_ARGS="+strings.Join([]string{"--socket", sock, "up", "--server", "http://127.0.0.1:1," + url, "--hostname", "jeju"}, "\x1f"))
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	up.Stderr = &stderr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Process.Kill(); up.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var loginURL string
	var out []string
	deadline := time.After(time.Minute)
	for loginURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("weft up ended without a URL: %q %s", out, stderr.String())
			}
			out = append(out, l)
			if u := strings.TrimSpace(l); strings.HasPrefix(u, url+"/login/node/") {
				loginURL = u
			}
		case <-deadline:
			t.Fatalf("no login URL from weft up: %q", out)
		}
	}
	code := loginURL[strings.LastIndex(loginURL, "/")+1:]

	page := func() (int, string) {
		resp, err := http.Get(loginURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Error("login page without a Content-Security-Policy")
		}
		return resp.StatusCode, string(b)
	}
	if st, body := page(); st != 200 || !strings.Contains(body, "weft admin nodes approve "+code) || !strings.Contains(body, "jeju") {
		t.Fatalf("login page: %d %s", st, body)
	}
	if o, errs, c := admin("nodes", "pending"); c != 0 || !strings.Contains(o, code) || !strings.Contains(o, "jeju") {
		t.Fatalf("nodes pending: exit %d %q %q", c, o, errs)
	}
	if _, errs, c := admin("nodes", "approve", code); c != 2 || !strings.Contains(errs, "--user") {
		t.Fatalf("approve without --user: exit %d %q", c, errs)
	}
	if o, errs, c := admin("nodes", "approve", code, "--user", "alice"); c != 0 || !strings.Contains(o, "approved jeju") {
		t.Fatalf("nodes approve: exit %d %q %q", c, o, errs)
	}
	done := make(chan error, 1)
	go func() {
		for l := range lines {
			out = append(out, l)
		}
		done <- up.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("weft up: %v\nstdout %q\nstderr %s", err, out, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("weft up did not finish after approval: %q", out)
	}
	all := strings.Join(out, "\n")
	if !strings.Contains(all, "Approved: joining as alice") || !strings.Contains(all, "weft is up as jeju") {
		t.Fatalf("weft up output:\n%s", all)
	}
	o, _, _ := admin("nodes", "list", "--json")
	var ns []adminapi.Node
	if err := json.Unmarshal([]byte(o), &ns); err != nil || len(ns) != 1 || ns[0].Name != "jeju" || ns[0].User != "alice" {
		t.Fatalf("nodes after login: %v %s", err, o)
	}
	// Single use.
	if st, body := page(); st != 404 {
		t.Fatalf("login page after use: %d %s", st, body)
	}
	if _, errs, c := admin("nodes", "approve", code, "--user", "alice"); c != 1 || !strings.Contains(errs, "no login waiting") {
		t.Fatalf("second approval: exit %d %q", c, errs)
	}
	if o, _, _ := admin("audit"); !strings.Contains(o, "login.approve") {
		t.Fatalf("approval not audited:\n%s", o)
	}
}

// TestUpInteractiveLoginTrustsDaemonCA: `weft up` without a key makes the
// interactive login from its own process, against a server whose
// certificate is from a private CA. With a daemon started with --ca-file
// (and no --ca-file given to up) the login starts and up prints its URL:
// it trusts what the daemon trusts. At a daemon without the CA it is
// refused, naming the certificate and --ca-file.
func TestUpInteractiveLoginTrustsDaemonCA(t *testing.T) {
	dir := t.TempDir()
	s := startTLSServer(t, dir)
	daemon := func(name string, extra ...string) string {
		sock := filepath.Join(dir, name+".sock")
		background(t, append([]string{"--socket", sock, "daemon", "--no-data-plane", "--state-dir", filepath.Join(dir, name)}, extra...)...)
		tstest.Eventually(t, name+" socket", func() bool { _, err := os.Stat(sock); return err == nil })
		return sock
	}
	plain := daemon("plain")
	if _, errs, code := weft(t, "--socket", plain, "up", "--server", s.url, "--hostname", "jeju"); code == 0 || !strings.Contains(errs, "does not trust") || !strings.Contains(errs, "--ca-file") {
		t.Fatalf("interactive up at a daemon without the CA: exit %d %q; want a refusal naming --ca-file", code, errs)
	}

	trusting := daemon("trusting", "--ca-file", s.caFile)
	up := exec.Command(os.Args[0], "-test.run=^TestHelperWeftProcess$")
	up.Env = append(os.Environ(), "WEFT_HELPER_ARGS="+strings.Join([]string{"--socket", trusting, "up", "--server", s.url, "--hostname", "jeju"}, "\x1f"))
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	up.Stderr = &stderr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Process.Kill(); up.Wait() })
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(strings.TrimSpace(sc.Text()), s.url+"/login/node/") {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("weft up ended without a login URL: %s", stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("no login URL from weft up: %s", stderr.String())
	}
}

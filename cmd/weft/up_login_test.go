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

	up := startUpProcess(t, "--socket", sock, "up", "--server", "http://127.0.0.1:1,"+url, "--hostname", "jeju")
	loginURL, out := up.awaitLoginURL(t, url)
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
		for l := range up.lines {
			out = append(out, l)
		}
		done <- up.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("weft up: %v\nstdout %q\nstderr %s", err, out, up.stderr.String())
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
	startUpProcess(t, "--socket", trusting, "up", "--server", s.url, "--hostname", "jeju").awaitLoginURL(t, s.url)
}

// upProcess is `weft up` run as a child process, so that a test can read
// its output line by line while it waits for an approval.
type upProcess struct {
	cmd    *exec.Cmd
	lines  chan string // up's stdout, closed when it ends
	stderr *tstest.Buffer
}

// startUpProcess starts `weft args...` (an up) as a child process and
// kills it when the test ends.
func startUpProcess(t *testing.T, args ...string) *upProcess {
	t.Helper()
	p := &upProcess{cmd: weftProcess(args...), lines: make(chan string, 100), stderr: new(tstest.Buffer)}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// awaitLoginURL reads up's output until it prints a login URL of the
// server at serverURL, and returns that URL with the lines read so far.
// The test fails if up ends first or prints none within a minute.
func (p *upProcess) awaitLoginURL(t *testing.T, serverURL string) (loginURL string, out []string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("weft up ended without a login URL: %q %s", out, p.stderr.String())
			}
			out = append(out, l)
			if u := strings.TrimSpace(l); strings.HasPrefix(u, serverURL+"/login/node/") {
				return u, out
			}
		case <-deadline:
			t.Fatalf("no login URL from weft up: %q %s", out, p.stderr.String())
		}
	}
}

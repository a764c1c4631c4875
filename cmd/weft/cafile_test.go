package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/tstest"
)

// TestUpCAFile runs weft server with a certificate from a private CA and
// nodes that reach it over HTTPS: without the CA a node's `weft up`
// refuses with an error naming the certificate and --ca-file, and joins
// nothing; with `weft up --ca-file` it joins and streams; a daemon started
// with --ca-file trusts the CA for every up; `weft admin --server
// --ca-file` administers it through the REST API, and without the CA is
// refused.
func TestUpCAFile(t *testing.T) {
	dir := t.TempDir()
	s := startTLSServer(t, dir)
	url, dataDir, caFile := s.url, s.dataDir, s.caFile
	admin := adminCLI(t, dataDir)
	admin("users", "create", "alice")
	authKey := admin("keys", "create", "--user", "alice", "--reusable")
	busan, _ := startDaemon(t, dir, "busan")
	_, errs, code := weft(t, "--socket", busan, "up", "--server", url, "--auth-key", authKey, "--hostname", "busan")
	if code == 0 || !strings.Contains(errs, "certificate") || !strings.Contains(errs, "--ca-file") {
		t.Fatalf("up without the CA: exit %d, stderr %q; want a refusal naming the certificate and --ca-file", code, errs)
	}
	t.Logf("weft up without the CA: %s", errs)
	if out := admin("nodes", "list"); strings.Contains(out, "busan") {
		t.Fatalf("a node that did not trust the server joined:\n%s", out)
	}
	if out, errs, code := weft(t, "--socket", busan, "up", "--server", url, "--auth-key", authKey, "--hostname", "busan", "--ca-file", caFile); code != 0 {
		t.Fatalf("up --ca-file: exit %d: %s %s", code, out, errs)
	}
	// The daemon keeps the CA with the server: an up with neither key
	// nor --ca-file reconnects.
	if out, errs, code := weft(t, "--socket", busan, "down"); code != 0 {
		t.Fatalf("down: %s %s", out, errs)
	}
	if out, errs, code := weft(t, "--socket", busan, "up"); code != 0 {
		t.Fatalf("up again without --ca-file: exit %d: %s %s", code, out, errs)
	}
	if _, errs, code := weft(t, "--socket", busan, "up", "--ca-file", filepath.Join(dataDir, "server.key")); code != 2 || !strings.Contains(errs, "no PEM certificate") {
		t.Fatalf("up --ca-file with a file holding no certificate: exit %d %q; want a usage error", code, errs)
	}

	mac, _ := startDaemon(t, dir, "mac", "--ca-file", caFile)
	if out, errs, code := weft(t, "--socket", mac, "up", "--server", url, "--auth-key", authKey, "--hostname", "mac"); code != 0 {
		t.Fatalf("up at a daemon started with --ca-file: exit %d: %s %s", code, out, errs)
	}
	tstest.Eventually(t, "busan and mac streaming, each seeing the other online", func() bool {
		for _, pair := range [][2]string{{busan, "mac"}, {mac, "busan"}} {
			out, _, code := weft(t, "--socket", pair[0], "status", "--json")
			if code != 0 || !strings.Contains(out, `"backend_state": "Running"`) || !strings.Contains(out, `"name": "`+pair[1]+`"`) {
				return false
			}
		}
		return true
	})

	keyPath := s.apiKeyFile(t)
	if out, errs, code := weft(t, "admin", "--server", url, "--api-key-file", keyPath, "--ca-file", caFile, "nodes", "list"); code != 0 || !strings.Contains(out, "mac") {
		t.Fatalf("remote admin with the CA: exit %d %q %q", code, out, errs)
	}
	if _, errs, code := weft(t, "admin", "--server", url, "--api-key-file", keyPath, "nodes", "list"); code == 0 || !strings.Contains(errs, "certificate") {
		t.Fatalf("remote admin without the CA: exit %d %q; want a certificate error", code, errs)
	}
}

// TestReadCAFile: a --ca-file that is missing, unreadable (a directory)
// or holds no PEM certificate is a usage error naming the flag, read
// before anything is sent to the daemon; a CA's certificate is read as
// is, and no flag reads nothing.
func TestReadCAFile(t *testing.T) {
	dir := t.TempDir()
	caFile, _, keyFile := tstest.NewCA(t, "weft test CA").WriteFiles(t, dir, "127.0.0.1")
	for _, c := range []struct {
		name, path, wantErr string
	}{
		{"none", "", ""},
		{"a CA", caFile, ""},
		{"missing", filepath.Join(dir, "nope.pem"), "no such file"},
		{"a directory", dir, "is a directory"},
		{"a key, no certificate", keyFile, "no PEM certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := readCAFile(c.path)
			if c.wantErr == "" {
				if err != nil || (c.path != "" && len(b) == 0) || (c.path == "" && b != nil) {
					t.Fatalf("readCAFile(%q) = %d bytes, %v", c.path, len(b), err)
				}
				return
			}
			var ue usageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "--ca-file") || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("readCAFile(%q) = %v; want a usage error naming --ca-file and %q", c.path, err, c.wantErr)
			}
		})
	}
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"weft/internal/control"
	"weft/internal/key"
	"weft/internal/noiseconn"
	"weft/internal/tstest"
)

// tlsServer is an in-process weft server over HTTPS on a free loopback
// port, its certificate signed by a private test CA.
type tlsServer struct {
	url, dataDir string
	caFile       string         // the CA's certificate, for --ca-file
	pool         *x509.CertPool // trusts the CA
	dir          string
}

// startTLSServer runs weft server with --tls-cert/--tls-key (a
// certificate for 127.0.0.1 from a new private CA, in dir), its data in
// dir/server, and waits until it answers /healthz over HTTPS to a client
// that trusts the CA.
func startTLSServer(t *testing.T, dir string) *tlsServer {
	t.Helper()
	ca := tstest.NewCA(t, "weft test CA")
	caFile, certFile, keyFile := ca.WriteFiles(t, dir, "127.0.0.1")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &tlsServer{url: "https://" + addr, dataDir: filepath.Join(dir, "server"), caFile: caFile, pool: ca.Pool(), dir: dir}
	background(t, "server", "--listen", addr, "--data-dir", s.dataDir, "--server-url", s.url, "--stun-listen=",
		"--metrics-listen=", "--tls-cert", certFile, "--tls-key", keyFile)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool}}}
	tstest.Eventually(t, "server /healthz over HTTPS", func() bool {
		resp, err := hc.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return s
}

// apiKeyFile creates an API key with `weft admin apikeys create` on the
// server's machine and returns the path of a file holding it, for
// --api-key-file.
func (s *tlsServer) apiKeyFile(t *testing.T) string {
	t.Helper()
	out, errs, code := weft(t, "admin", "--data-dir", s.dataDir, "apikeys", "create")
	if code != 0 {
		t.Fatal(errs)
	}
	path := filepath.Join(s.dir, "api.key")
	if err := os.WriteFile(path, []byte(lastLine(out)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServerTLS runs weft server with --tls-cert/--tls-key (a certificate
// from a private CA) and reaches it over HTTPS as an admin client that
// trusts the CA (--ca-file) and as a node's control transport (the Noise
// upgrade inside TLS, the server key pinned); a client that does not
// trust the CA is refused by the TLS check.
func TestServerTLS(t *testing.T) {
	s := startTLSServer(t, t.TempDir())
	url, dataDir, pool := s.url, s.dataDir, s.pool
	keyPath := s.apiKeyFile(t)
	if out, errs, code := weft(t, "admin", "--server", url, "--api-key-file", keyPath, "--ca-file", s.caFile, "users", "list"); code != 0 || !strings.Contains(out, "NAME") {
		t.Fatalf("remote admin over HTTPS with --ca-file: exit %d %q %q", code, out, errs)
	}
	if _, errs, code := weft(t, "admin", "--server", url, "--api-key-file", keyPath, "users", "list"); code == 0 || !strings.Contains(errs, "certificate") {
		t.Fatalf("remote admin not trusting the certificate: exit %d %q; want a certificate error", code, errs)
	}

	sk, err := control.LoadOrCreateKey(filepath.Join(dataDir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &noiseconn.Dialer{MachineKey: key.NewMachine(), ServerKey: sk.Public(), TLSConfig: &tls.Config{RootCAs: pool}}
	c, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("node transport over HTTPS: %v", err)
	}
	c.Close()
	d.TLSConfig = nil // the system's roots do not hold the test certificate
	if c, err := d.Dial(ctx, url); err == nil || !strings.Contains(err.Error(), "certificate") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("node transport not trusting the certificate: %v; want a certificate error", err)
	}
}

// TestServerTLSFlags checks the wiring of weft server's HTTPS flags
// without a network: the configuration autocert is given (it answers the
// tls-alpn-01 challenge, takes certificates only for the named domain and
// caches in DATA-DIR/acme, owner-only). TestLabACME gets a certificate
// from a real ACME server.
func TestServerTLSFlags(t *testing.T) {
	dir := t.TempDir()
	_, certFile, keyFile := tstest.NewCA(t, "weft test CA").WriteFiles(t, dir, "127.0.0.1")
	for _, c := range []struct {
		name    string
		o       tlsOptions
		plain   bool
		wantErr string
	}{
		{"none", tlsOptions{}, true, ""},
		{"files", tlsOptions{certFile: certFile, keyFile: keyFile}, false, ""},
		{"cert only", tlsOptions{certFile: certFile}, false, "go together"},
		{"both kinds", tlsOptions{certFile: certFile, keyFile: keyFile, acmeDomains: []string{"weft.example.com"}}, false, "not both"},
		{"missing file", tlsOptions{certFile: certFile, keyFile: filepath.Join(dir, "nope")}, false, "loading"},
		{"bad domain", tlsOptions{acmeDomains: []string{"https://weft.example.com"}}, false, "DNS name"},
		{"acme", tlsOptions{acmeDomains: []string{"weft.example.com"}}, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			cfg, err := serverTLS(c.o, data)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || (cfg == nil) != c.plain {
				t.Fatalf("cfg %v err %v", cfg, err)
			}
			if len(c.o.acmeDomains) == 0 {
				return
			}
			if !slices.Contains(cfg.NextProtos, "acme-tls/1") || cfg.GetCertificate == nil {
				t.Fatalf("ACME config does not answer tls-alpn-01: %v", cfg.NextProtos)
			}
			if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"}); err == nil {
				t.Fatal("a certificate would be fetched for a name not given to --acme-domain")
			}
			if st, err := os.Stat(filepath.Join(data, "acme")); err != nil || st.Mode().Perm() != 0o700 {
				t.Fatalf("ACME cache dir: %v %v", st, err)
			}
		})
	}
}

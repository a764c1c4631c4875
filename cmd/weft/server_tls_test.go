package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
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

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// to dir and returns the two paths and a pool trusting the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServerTLS runs weft server with --tls-cert/--tls-key (a self-signed
// certificate) and reaches it over HTTPS as an admin client that trusts
// the certificate (--ca-file) and as a node's control transport (the
// Noise upgrade inside TLS, the server key pinned); a client that does
// not trust the certificate is refused by the TLS check.
func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	dataDir := filepath.Join(dir, "server")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	url := "https://" + addr
	background(t, "server", "--listen", addr, "--data-dir", dataDir, "--server-url", url, "--stun-listen=",
		"--metrics-listen=", "--tls-cert", certFile, "--tls-key", keyFile)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	tstest.Eventually(t, "server /healthz over HTTPS", func() bool {
		resp, err := hc.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	out, errs, code := weft(t, "admin", "--data-dir", dataDir, "apikeys", "create")
	if code != 0 {
		t.Fatal(errs)
	}
	keyPath := filepath.Join(dir, "api.key")
	os.WriteFile(keyPath, []byte(lastLine(out)), 0o600)
	if out, errs, code := weft(t, "admin", "--server", url, "--api-key-file", keyPath, "--ca-file", certFile, "users", "list"); code != 0 || !strings.Contains(out, "NAME") {
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
	certFile, keyFile, _ := selfSigned(t, dir)
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

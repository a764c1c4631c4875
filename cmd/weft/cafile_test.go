package main

import (
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
	"strings"
	"testing"
	"time"

	"weft/internal/tstest"
)

// privateCA writes to dir a CA certificate (ca.pem) and a server
// certificate for ips (none: 127.0.0.1) that it signed (cert.pem,
// key.pem), as a tailnet with its own certificate authority has, and
// returns the paths and a pool trusting the CA.
func privateCA(t *testing.T, dir string, ips ...net.IP) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	if len(ips) == 0 {
		ips = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "weft test server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: srvDER},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: kb},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return caFile, certFile, keyFile, pool
}

// TestUpCAFile runs weft server with a certificate from a private CA and
// nodes that reach it over HTTPS: without the CA a node's `weft up`
// refuses with an error naming the certificate and --ca-file, and joins
// nothing; with `weft up --ca-file` it joins and streams; a daemon started
// with --ca-file trusts the CA for every up; `weft admin --server
// --ca-file` administers it through the REST API, and without the CA is
// refused.
func TestUpCAFile(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile, pool := privateCA(t, dir)
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
	admin := func(args ...string) string {
		t.Helper()
		out, errs, code := weft(t, append([]string{"admin", "--data-dir", dataDir}, args...)...)
		if code != 0 {
			t.Fatalf("weft admin %v: exit %d: %s", args, code, errs)
		}
		return strings.TrimSpace(out)
	}
	admin("users", "create", "alice")
	authKey := admin("keys", "create", "--user", "alice", "--reusable")
	daemon := func(name string, extra ...string) string {
		sock := filepath.Join(dir, name+".sock")
		background(t, append([]string{"--socket", sock, "daemon", "--no-data-plane", "--state-dir", filepath.Join(dir, name)}, extra...)...)
		tstest.Eventually(t, name+" socket", func() bool { _, err := os.Stat(sock); return err == nil })
		return sock
	}

	busan := daemon("busan")
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

	mac := daemon("mac", "--ca-file", caFile)
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

	out, errs, code := weft(t, "admin", "--data-dir", dataDir, "apikeys", "create")
	if code != 0 {
		t.Fatal(errs)
	}
	keyPath := filepath.Join(dir, "api.key")
	os.WriteFile(keyPath, []byte(lastLine(out)), 0o600)
	if out, errs, code := weft(t, "admin", "--server", url, "--api-key-file", keyPath, "--ca-file", caFile, "nodes", "list"); code != 0 || !strings.Contains(out, "mac") {
		t.Fatalf("remote admin with the CA: exit %d %q %q", code, out, errs)
	}
	if _, errs, code := weft(t, "admin", "--server", url, "--api-key-file", keyPath, "nodes", "list"); code == 0 || !strings.Contains(errs, "certificate") {
		t.Fatalf("remote admin without the CA: exit %d %q; want a certificate error", code, errs)
	}
}

package netutil

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"weft/internal/tstest"
)

func TestTrustTLS(t *testing.T) {
	ca := tstest.NewCA(t, "test CA")
	caPEM := ca.PEM
	for _, c := range []struct {
		name     string
		pems     [][]byte
		wantNil  bool
		wantErr  bool
		trustsCA bool
	}{
		{"none: the system's roots", nil, true, false, false},
		{"empty files are none", [][]byte{nil, {}}, true, false, false},
		{"a CA", [][]byte{caPEM}, false, false, true},
		{"a CA and an empty one", [][]byte{nil, caPEM}, false, false, true},
		{"no certificate in the file", [][]byte{[]byte("not a certificate")}, false, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := TrustTLS(c.pems...)
			if (err != nil) != c.wantErr || (cfg == nil) != (c.wantNil || c.wantErr) {
				t.Fatalf("TrustTLS = %v, %v", cfg, err)
			}
			if cfg == nil {
				return
			}
			_, verr := ca.Cert().Verify(x509.VerifyOptions{Roots: cfg.RootCAs})
			if (verr == nil) != c.trustsCA {
				t.Fatalf("the CA verifies against the pool: %v", verr)
			}
		})
	}
}

func TestUntrustedCertHint(t *testing.T) {
	untrusted := fmt.Errorf("dial: %w", x509.UnknownAuthorityError{})
	other := errors.New("connection refused")
	if got := UntrustedCertHint(untrusted, "run --ca-file"); !strings.Contains(got.Error(), "run --ca-file") || !errors.As(got, new(x509.UnknownAuthorityError)) {
		t.Fatalf("hint for an unknown authority: %v", got)
	}
	if got := UntrustedCertHint(other, "run --ca-file"); got != other {
		t.Fatalf("another error changed: %v", got)
	}
	if UntrustedCertHint(nil, "x") != nil {
		t.Fatal("nil changed")
	}
}

// TestTrustTLSKeepsSystemRoots checks that adding a private CA keeps the
// system's roots: a server with a publicly trusted certificate (a relay
// of another region, say) is still trusted once --ca-file is given. The
// system's roots are read once per process, so the check runs in a child
// test process whose system roots are one CA named by SSL_CERT_FILE.
func TestTrustTLSKeepsSystemRoots(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SSL_CERT_FILE names the system's roots on Linux only")
	}
	if os.Getenv("WEFT_TEST_TRUST_CHILD") != "" {
		trustChild(t)
		return
	}
	dir := t.TempDir()
	sysPEM, privPEM := tstest.NewCA(t, "system CA").PEM, tstest.NewCA(t, "private CA").PEM
	sysFile, privFile := filepath.Join(dir, "system.pem"), filepath.Join(dir, "private.pem")
	for f, b := range map[string][]byte{sysFile: sysPEM, privFile: privPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTrustTLSKeepsSystemRoots$", "-test.v")
	cmd.Env = append(os.Environ(), "WEFT_TEST_TRUST_CHILD="+privFile, "SSL_CERT_FILE="+sysFile, "SSL_CERT_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestTrustTLSKeepsSystemRoots") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// trustChild runs in the child of TestTrustTLSKeepsSystemRoots: both the
// system's CA and the private one verify against TrustTLS's pool.
func trustChild(t *testing.T) {
	read := func(f string) *x509.Certificate {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	privFile := os.Getenv("WEFT_TEST_TRUST_CHILD")
	sys, priv := read(os.Getenv("SSL_CERT_FILE")), read(privFile)
	privPEM, _ := os.ReadFile(privFile)
	cfg, err := TrustTLS(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*x509.Certificate{"the system's CA": sys, "the private CA": priv} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: cfg.RootCAs}); err != nil {
			t.Errorf("%s does not verify with TrustTLS's pool: %v", name, err)
		}
	}
	// Without a private CA the system's roots alone (a nil config).
	if cfg, err := TrustTLS(); cfg != nil || err != nil {
		t.Errorf("TrustTLS() = %v, %v; want nil, nil", cfg, err)
	}
}

package netutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

func testCA(t *testing.T) ([]byte, *x509.Certificate) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c
}

func TestTrustTLS(t *testing.T) {
	caPEM, ca := testCA(t)
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
			_, verr := ca.Verify(x509.VerifyOptions{Roots: cfg.RootCAs})
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

package tstest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// TestCAWriteFiles: the files WriteFiles writes are a key pair a server
// loads and a CA file a client trusts, and the server's certificate
// verifies for its host against the CA's pool and against that file.
func TestCAWriteFiles(t *testing.T) {
	ca := NewCA(t, "test CA")
	caFile, certFile, keyFile := ca.WriteFiles(t, t.TempDir(), "127.0.0.1", "weft.example")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	fromFile := x509.NewCertPool()
	if !fromFile.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in the CA file")
	}
	for name, pool := range map[string]*x509.CertPool{"Pool": ca.Pool(), "the CA file": fromFile} {
		for _, host := range []string{"127.0.0.1", "weft.example"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
				t.Errorf("%s does not verify the certificate for %s: %v", name, host, err)
			}
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool()}); err == nil {
		t.Error("the certificate verifies against an empty pool")
	}
}

package tstest

import (
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// DecryptAnchor is the benchmark loop of a per-packet cost's anchor: it
// opens one 1,400-byte ChaCha20-Poly1305 packet per iteration, as
// wireguard-go does for every packet it receives, and reports
// "ns/packet". Benchmarks of per-packet work (the filter, the
// destination guard) run it in the same run, so that their cost reads as
// a share of the tunnel's own.
func DecryptAnchor(b *testing.B) {
	aead, err := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, chacha20poly1305.NonceSize)
	sealed := aead.Seal(nil, nonce, make([]byte, 1400), nil)
	out := make([]byte, 0, 1400)
	for b.Loop() {
		if _, err := aead.Open(out[:0], nonce, sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

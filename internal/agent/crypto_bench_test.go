package agent_test

import (
	"fmt"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// tunnelPacketSizes are the plaintext sizes the tunnel seals: a full
// packet at the default tunnel MTU (1280) and at the MTU path MTU
// discovery picks on a 1500-byte path (1420).
var tunnelPacketSizes = []int{1280, 1420}

// sealOpen seals and then opens one packet of len(pt) bytes with the AEAD
// and nonce layout wireguard-go uses for transport data (a 64-bit counter
// in the last 8 bytes of a 12-byte nonce, no additional data), so a
// second of it is what one core can do for one packet crossing a tunnel:
// sealed by the sender, opened by the receiver.
func sealOpen(aead interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
	Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
}, nonce, pt, ct, out []byte, counter uint64) error {
	for i := range 8 {
		nonce[4+i] = byte(counter >> (8 * i))
	}
	sealed := aead.Seal(ct[:0], nonce, pt, nil)
	if _, err := aead.Open(out[:0], nonce, sealed, nil); err != nil {
		return fmt.Errorf("open: %w", err)
	}
	return nil
}

// BenchmarkCryptoLimit is the tunnel's crypto limit: ChaCha20-Poly1305
// seal plus open of one tunnel packet, by the code wireguard-go uses
// (golang.org/x/crypto/chacha20poly1305), on one goroutine. MB/s is then
// payload bytes per core-second (docs/benchmarks.md compares the
// tunnel's bytes per daemon CPU-second with it):
//
//	go test -run '^$' -bench CryptoLimit ./internal/agent/
func BenchmarkCryptoLimit(b *testing.B) {
	for _, size := range tunnelPacketSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			aead, err := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
			if err != nil {
				b.Fatal(err)
			}
			nonce := make([]byte, chacha20poly1305.NonceSize)
			pt := make([]byte, size)
			ct := make([]byte, size+aead.Overhead())
			out := make([]byte, size)
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if err := sealOpen(aead, nonce, pt, ct, out, uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

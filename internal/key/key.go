// Package key defines weft's three Curve25519 key kinds and their text forms.
//
// A node has a long-term machine key (its identity toward the control
// server and the Noise static key of the control channel), a rotatable node
// key (its WireGuard key, which peers and relays address it by) and a disco
// key made fresh on every run (it seals path-discovery messages). Each kind is
// its own Go type so that one can never be passed where another is meant, and
// each prints with its own prefix ("mkey:", "nodekey:", "discokey:") so that a
// key in a log or a file says what it is.
package key

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// Len is the length in bytes of every weft key.
const Len = 32

// ErrBadKey reports a key text that cannot be parsed.
var ErrBadKey = errors.New("key: malformed key")

type raw [Len]byte

func newPrivate() raw {
	var k raw
	if _, err := rand.Read(k[:]); err != nil {
		panic("key: crypto/rand failed: " + err.Error())
	}
	// Clamp as RFC 7748 describes, so the bytes are usable as-is by
	// WireGuard and Noise alike.
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

func (k raw) public() raw {
	var pub raw
	out, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// Only possible for a low-order result, which a clamped
		// random scalar times the base point cannot give.
		panic("key: X25519: " + err.Error())
	}
	copy(pub[:], out)
	return pub
}

func (k raw) isZero() bool {
	var z raw
	return subtle.ConstantTimeCompare(k[:], z[:]) == 1
}

func (k raw) text(prefix string) []byte {
	b := make([]byte, 0, len(prefix)+2*Len)
	b = append(b, prefix...)
	return hex.AppendEncode(b, k[:])
}

func parseRaw(prefix string, s []byte) (raw, error) {
	var k raw
	str := string(s)
	if !strings.HasPrefix(str, prefix) {
		return k, fmt.Errorf("%w: want prefix %q", ErrBadKey, prefix)
	}
	str = str[len(prefix):]
	if len(str) != 2*Len {
		return k, fmt.Errorf("%w: want %d hex digits, got %d", ErrBadKey, 2*Len, len(str))
	}
	if _, err := hex.Decode(k[:], []byte(str)); err != nil {
		return k, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return k, nil
}

package key

import "encoding/hex"

// Kind names one of the key kinds; it fixes the text prefix. The kinds are
// empty marker types so that a Public[NodeKind] cannot be used where a
// Public[DiscoKind] is wanted.
type Kind interface {
	MachineKind | NodeKind | DiscoKind
	prefix() string
}

// MachineKind marks machine keys: the node's long-term identity toward the
// control server and its Noise static key.
type MachineKind struct{}

// NodeKind marks node keys: the node's WireGuard key, rotatable, by which
// peers and relays address it.
type NodeKind struct{}

// DiscoKind marks disco keys: made fresh each run, they seal
// path-discovery messages.
type DiscoKind struct{}

func (MachineKind) prefix() string { return "mkey" }
func (NodeKind) prefix() string    { return "nodekey" }
func (DiscoKind) prefix() string   { return "discokey" }

// Private is a private key of kind K.
type Private[K Kind] struct{ k raw }

// Public is the public half of a Private[K].
type Public[K Kind] struct{ k raw }

// The concrete key types used across weft.
type (
	MachinePrivate = Private[MachineKind]
	MachinePublic  = Public[MachineKind]
	NodePrivate    = Private[NodeKind]
	NodePublic     = Public[NodeKind]
	DiscoPrivate   = Private[DiscoKind]
	DiscoPublic    = Public[DiscoKind]
)

// NewMachine makes a new random machine key.
func NewMachine() MachinePrivate { return MachinePrivate{newPrivate()} }

// NewNode makes a new random node key.
func NewNode() NodePrivate { return NodePrivate{newPrivate()} }

// NewDisco makes a new random disco key.
func NewDisco() DiscoPrivate { return DiscoPrivate{newPrivate()} }

func prefixOf[K Kind]() string {
	var k K
	return k.prefix()
}

// Public returns the public half of k.
func (k Private[K]) Public() Public[K] { return Public[K]{k.k.public()} }

// IsZero reports whether k is unset.
func (k Private[K]) IsZero() bool { return k.k.isZero() }

// Raw32 returns the key's bytes, for libraries (WireGuard, Noise) that take them.
func (k Private[K]) Raw32() [32]byte { return k.k }

// PrivateFromRaw32 wraps raw key bytes.
func PrivateFromRaw32[K Kind](b [32]byte) Private[K] { return Private[K]{b} }

// MarshalText encodes the key as "priv" + kind prefix + ":" + hex.
func (k Private[K]) MarshalText() ([]byte, error) {
	return k.k.text("priv" + prefixOf[K]() + ":"), nil
}

// UnmarshalText parses the form MarshalText writes.
func (k *Private[K]) UnmarshalText(b []byte) error {
	r, err := parseRaw("priv"+prefixOf[K]()+":", b)
	if err != nil {
		return err
	}
	k.k = r
	return nil
}

// IsZero reports whether k is unset.
func (k Public[K]) IsZero() bool { return k.k.isZero() }

// Raw32 returns the key's bytes.
func (k Public[K]) Raw32() [32]byte { return k.k }

// PublicFromRaw32 wraps raw key bytes.
func PublicFromRaw32[K Kind](b [32]byte) Public[K] { return Public[K]{b} }

// String returns the key's text form, the kind prefix, ":" and hex.
func (k Public[K]) String() string { return string(k.k.text(prefixOf[K]() + ":")) }

// ShortString returns an abbreviated form for logs.
func (k Public[K]) ShortString() string { return "[" + hex.EncodeToString(k.k[:3]) + "]" }

// MarshalText encodes the key as String does.
func (k Public[K]) MarshalText() ([]byte, error) { return k.k.text(prefixOf[K]() + ":"), nil }

// UnmarshalText parses the form MarshalText writes.
func (k *Public[K]) UnmarshalText(b []byte) error {
	r, err := parseRaw(prefixOf[K]()+":", b)
	if err != nil {
		return err
	}
	k.k = r
	return nil
}

// ParsePublic parses the text form of a public key of kind K.
func ParsePublic[K Kind](s string) (Public[K], error) {
	var k Public[K]
	err := k.UnmarshalText([]byte(s))
	return k, err
}

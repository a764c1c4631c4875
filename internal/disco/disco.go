// Package disco holds weft's path-discovery messages: ping, pong,
// call-me-maybe and the port-guessing request, their byte encoding, and the
// NaCl box that seals them between two disco keys.
//
// A sealed disco packet shares the UDP socket (and the relay) with
// WireGuard, so it starts with a magic prefix that no WireGuard message and
// no STUN message can start with. docs/disco.md gives the byte layout.
package disco

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/crypto/nacl/box"

	"weft/internal/key"
)

// Magic starts every sealed disco packet: "weft" and 0xd1 0x5c ("disco").
// WireGuard messages start with a type byte 1–4 and three zero bytes, and
// STUN messages start with two zero bits, so neither can be mistaken for it.
const Magic = "weft\xd1\x5c"

const (
	magicLen  = len(Magic)
	keyLen    = key.Len
	nonceLen  = 24
	headerLen = magicLen + keyLen + nonceLen
	// Overhead is the number of bytes sealing adds to a plaintext message.
	Overhead = headerLen + box.Overhead
)

// MaxEndpoints bounds the endpoints in one call-me-maybe, so that the
// message fits a 1280-byte IPv6 datagram with room to spare.
const MaxEndpoints = 48

// Errors returned by Parse and Open.
var (
	ErrNotDisco   = errors.New("disco: not a disco packet")
	ErrShort      = errors.New("disco: message too short")
	ErrUnknown    = errors.New("disco: unknown message type")
	ErrOpen       = errors.New("disco: cannot open box (wrong key or tampered)")
	ErrBadVersion = errors.New("disco: unsupported message version")
)

// Type is the first plaintext byte of a message.
type Type byte

// The message types. Numbers are on the wire; never reuse one.
const (
	TypePing        Type = 1
	TypePong        Type = 2
	TypeCallMeMaybe Type = 3
	TypePortGuess   Type = 4
)

// version is the second plaintext byte. A receiver ignores trailing bytes it
// does not know, so fields may be appended without a bump; a bump means an
// incompatible change.
const version = 0

// TxID identifies one ping and the pong that answers it.
type TxID [12]byte

// NewTxID returns a random transaction id.
func NewTxID() TxID {
	var t TxID
	if _, err := rand.Read(t[:]); err != nil {
		panic("disco: crypto/rand failed: " + err.Error())
	}
	return t
}

// Message is one of *Ping, *Pong, *CallMeMaybe, *PortGuess.
type Message interface {
	// AppendMarshal appends the plaintext encoding (type, version, body).
	AppendMarshal(b []byte) []byte
}

// Ping asks the receiver to answer with a Pong. NodeKey is the sender's
// node key, so the receiver can check the disco key belongs to that node.
type Ping struct {
	TxID    TxID
	NodeKey key.NodePublic
	// Padding is the number of zero bytes after the fields, so that the
	// sealed ping fills a datagram of the size a path MTU probe tests
	// (PaddingFor). A receiver ignores them; the pong stays small.
	Padding int
}

// MaxPadding bounds Ping.Padding: a padded ping still fits a 9000-byte
// jumbo frame's datagram.
const MaxPadding = 9000

// pingLen is the plaintext length of an unpadded ping.
const pingLen = 2 + 12 + keyLen

// PaddingFor returns the Ping.Padding that makes a sealed ping exactly
// payload bytes long (the UDP payload), or 0 if payload is no larger than
// an unpadded sealed ping.
func PaddingFor(payload int) int {
	return min(max(payload-Overhead-pingLen, 0), MaxPadding)
}

// Pong answers a Ping. Src is the address the ping came from as the
// receiver saw it, which tells the pinger its own public mapping.
type Pong struct {
	TxID TxID
	Src  netip.AddrPort
}

// CallMeMaybe, sent through the relay, gives the sender's endpoints and
// asks the receiver to ping them now, so both sides punch at once.
type CallMeMaybe struct {
	Endpoints []netip.AddrPort
}

// PortGuess coordinates a port-guessing round between a node behind a NAT
// whose mapping varies by destination ("hard") and one whose does not
// ("easy"). It travels through the relay. The easy side sends it with
// Hard=false and Public=its own public endpoint to ask for a round; the hard
// side opens Sockets sockets, pings Public from each, then answers with
// Hard=true and Public=its public address (port ignored), after which the
// easy side sends up to Probes pings to random ports of that address within
// Window.
type PortGuess struct {
	Hard    bool
	Public  netip.AddrPort
	Sockets uint16
	Probes  uint16
	// WindowMS is how long the round lasts, in milliseconds.
	WindowMS uint16
}

const addrPortLen = 18 // 16-byte IPv6 (IPv4-mapped for IPv4) + 2-byte port

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().As16()
	b = append(b, a[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func parseAddrPort(b []byte) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	if a.IsUnspecified() {
		// The zero AddrPort encodes as :: port 0; give it back as zero.
		if binary.BigEndian.Uint16(b[16:]) == 0 {
			return netip.AddrPort{}
		}
	}
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:]))
}

func header(b []byte, t Type) []byte { return append(b, byte(t), version) }

// AppendMarshal implements Message.
func (m *Ping) AppendMarshal(b []byte) []byte {
	b = header(b, TypePing)
	b = append(b, m.TxID[:]...)
	k := m.NodeKey.Raw32()
	b = append(b, k[:]...)
	return append(b, make([]byte, min(max(m.Padding, 0), MaxPadding))...)
}

// AppendMarshal implements Message.
func (m *Pong) AppendMarshal(b []byte) []byte {
	b = header(b, TypePong)
	b = append(b, m.TxID[:]...)
	return appendAddrPort(b, m.Src)
}

// AppendMarshal implements Message. Endpoints past MaxEndpoints are dropped.
func (m *CallMeMaybe) AppendMarshal(b []byte) []byte {
	b = header(b, TypeCallMeMaybe)
	for i, ep := range m.Endpoints {
		if i == MaxEndpoints {
			break
		}
		b = appendAddrPort(b, ep)
	}
	return b
}

// AppendMarshal implements Message.
func (m *PortGuess) AppendMarshal(b []byte) []byte {
	b = header(b, TypePortGuess)
	var flags byte
	if m.Hard {
		flags |= 1
	}
	b = append(b, flags)
	b = appendAddrPort(b, m.Public)
	b = binary.BigEndian.AppendUint16(b, m.Sockets)
	b = binary.BigEndian.AppendUint16(b, m.Probes)
	return binary.BigEndian.AppendUint16(b, m.WindowMS)
}

// Parse decodes a plaintext message as AppendMarshal writes it.
func Parse(b []byte) (Message, error) {
	if len(b) < 2 {
		return nil, ErrShort
	}
	t, v, body := Type(b[0]), b[1], b[2:]
	if v != version {
		return nil, fmt.Errorf("%w: %d", ErrBadVersion, v)
	}
	switch t {
	case TypePing:
		if len(body) < 12+keyLen {
			return nil, ErrShort
		}
		m := &Ping{NodeKey: key.PublicFromRaw32[key.NodeKind]([32]byte(body[12 : 12+keyLen]))}
		copy(m.TxID[:], body)
		// Whatever follows is padding, whatever its bytes (a later
		// version may put fields there).
		m.Padding = min(len(body)-12-keyLen, MaxPadding)
		return m, nil
	case TypePong:
		if len(body) < 12+addrPortLen {
			return nil, ErrShort
		}
		m := &Pong{Src: parseAddrPort(body[12:])}
		copy(m.TxID[:], body)
		return m, nil
	case TypeCallMeMaybe:
		n := min(len(body)/addrPortLen, MaxEndpoints)
		m := &CallMeMaybe{Endpoints: make([]netip.AddrPort, 0, n)}
		for i := range n {
			ep := parseAddrPort(body[i*addrPortLen:])
			if ep.IsValid() && ep.Port() != 0 {
				m.Endpoints = append(m.Endpoints, ep)
			}
		}
		return m, nil
	case TypePortGuess:
		if len(body) < 1+addrPortLen+6 {
			return nil, ErrShort
		}
		m := &PortGuess{Hard: body[0]&1 != 0, Public: parseAddrPort(body[1:])}
		rest := body[1+addrPortLen:]
		m.Sockets = binary.BigEndian.Uint16(rest)
		m.Probes = binary.BigEndian.Uint16(rest[2:])
		m.WindowMS = binary.BigEndian.Uint16(rest[4:])
		return m, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknown, t)
}

// LooksLikeDisco reports whether pkt starts with the disco magic and is long
// enough to hold a sealed message. It is cheap enough for the packet path.
func LooksLikeDisco(pkt []byte) bool {
	return len(pkt) >= Overhead+2 && string(pkt[:magicLen]) == Magic
}

// Sender returns the sender's disco public key from a packet for which
// LooksLikeDisco is true, so the receiver can pick the shared key to open it.
func Sender(pkt []byte) (key.DiscoPublic, error) {
	if !LooksLikeDisco(pkt) {
		return key.DiscoPublic{}, ErrNotDisco
	}
	return key.PublicFromRaw32[key.DiscoKind]([32]byte(pkt[magicLen : magicLen+keyLen])), nil
}

// SharedKey is the precomputed NaCl box key between our disco private key
// and one peer's disco public key. Computing it costs a Curve25519
// multiplication, so it is made once per peer and kept.
type SharedKey struct {
	self key.DiscoPublic
	k    [32]byte
}

// NewSharedKey precomputes the box key between priv and peer.
func NewSharedKey(priv key.DiscoPrivate, peer key.DiscoPublic) *SharedKey {
	s := &SharedKey{self: priv.Public()}
	pk, sk := peer.Raw32(), priv.Raw32()
	box.Precompute(&s.k, &pk, &sk)
	return s
}

// Seal returns the sealed packet for m: magic, our disco public key, a
// random nonce and the box.
func (s *SharedKey) Seal(m Message) []byte {
	plain := m.AppendMarshal(make([]byte, 0, 64))
	out := make([]byte, headerLen, headerLen+len(plain)+box.Overhead)
	copy(out, Magic)
	self := s.self.Raw32()
	copy(out[magicLen:], self[:])
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		panic("disco: crypto/rand failed: " + err.Error())
	}
	copy(out[magicLen+keyLen:], nonce[:])
	return box.SealAfterPrecomputation(out, plain, &nonce, &s.k)
}

// Open checks and opens a sealed packet from the peer this key was made
// for, and parses the message inside. The caller must have chosen the key
// by the packet's sender (see Sender); a packet from anyone else fails.
func (s *SharedKey) Open(pkt []byte) (Message, error) {
	if !LooksLikeDisco(pkt) {
		return nil, ErrNotDisco
	}
	var nonce [nonceLen]byte
	copy(nonce[:], pkt[magicLen+keyLen:headerLen])
	plain, ok := box.OpenAfterPrecomputation(nil, pkt[headerLen:], &nonce, &s.k)
	if !ok {
		return nil, ErrOpen
	}
	return Parse(plain)
}

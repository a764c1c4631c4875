package noiseconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"unicode/utf8"

	"github.com/flynn/noise"

	"weft/internal/key"
)

const (
	// HandshakeMaxSize bounds one handshake message. IK's messages are
	// 96 and 48 bytes plus the payload, which is a few bytes and at most a
	// short error text.
	HandshakeMaxSize = 1024
	// maxErrorText bounds the error text the server may put in its
	// handshake reply.
	maxErrorText = 512
	// payloadMagic starts every handshake payload, so that a peer
	// speaking something else entirely is told apart from a version
	// mismatch.
	payloadMagic = "weft"
)

// prologue is mixed into the handshake hash: both sides must agree on it.
var prologue = []byte("weft control channel")

var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// Handshake errors.
var (
	// ErrVersion: the peers speak different protocol versions.
	ErrVersion = errors.New("noiseconn: protocol version mismatch")
	// ErrHandshake: the handshake failed (wrong key, garbage, truncation).
	ErrHandshake = errors.New("noiseconn: handshake failed")
	// ErrRefused: the server completed the handshake but refused the
	// session, with the reason it gave.
	ErrRefused = errors.New("noiseconn: refused by server")
)

// handshakePayload is the plaintext carried inside each IK message.
type handshakePayload struct {
	Version int
	// Error is set only in the server's reply, when it refuses.
	Error string
}

// encode lays the payload out as: "weft", version (uint16 big-endian),
// then the error text, if any, in UTF-8.
func (p handshakePayload) encode() []byte {
	b := make([]byte, 0, len(payloadMagic)+2+len(p.Error))
	b = append(b, payloadMagic...)
	b = binary.BigEndian.AppendUint16(b, uint16(p.Version))
	return append(b, p.Error...)
}

// decodePayload parses what encode writes.
func decodePayload(b []byte) (handshakePayload, error) {
	var p handshakePayload
	if len(b) < len(payloadMagic)+2 || string(b[:len(payloadMagic)]) != payloadMagic {
		return p, fmt.Errorf("%w: handshake payload is not weft's", ErrHandshake)
	}
	b = b[len(payloadMagic):]
	p.Version = int(binary.BigEndian.Uint16(b))
	rest := b[2:]
	if len(rest) > maxErrorText || !utf8.Valid(rest) {
		return p, fmt.Errorf("%w: bad error text in handshake payload", ErrHandshake)
	}
	p.Error = string(rest)
	return p, nil
}

func writeHandshakeFrame(w io.Writer, msg []byte) error {
	buf := make([]byte, headerSize+len(msg))
	binary.BigEndian.PutUint32(buf, uint32(len(msg)))
	copy(buf[headerSize:], msg)
	_, err := w.Write(buf)
	return err
}

func readHandshakeFrame(r io.Reader) ([]byte, error) {
	var hdr [headerSize]byte
	n, err := readFrameHeader(r, hdr[:], HandshakeMaxSize)
	if err != nil {
		return nil, err
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("noiseconn: reading handshake: %w", unexpectedEOF(err))
	}
	return msg, nil
}

func dhKey(k key.MachinePrivate) noise.DHKey {
	priv := k.Raw32()
	pub := k.Public().Raw32()
	return noise.DHKey{Private: priv[:], Public: pub[:]}
}

// clientHandshake runs the initiator side over conn (reading through r,
// which may hold bytes already buffered). It returns an established Conn.
func clientHandshake(conn net.Conn, r io.Reader, machine key.MachinePrivate, server key.MachinePublic, version int) (*Conn, error) {
	serverRaw := server.Raw32()
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   cipherSuite,
		Pattern:       noise.HandshakeIK,
		Initiator:     true,
		Prologue:      prologue,
		StaticKeypair: dhKey(machine),
		PeerStatic:    serverRaw[:],
	})
	if err != nil {
		return nil, fmt.Errorf("noiseconn: %w", err)
	}
	msg, _, _, err := hs.WriteMessage(nil, handshakePayload{Version: version}.encode())
	if err != nil {
		return nil, fmt.Errorf("noiseconn: %w", err)
	}
	if err := writeHandshakeFrame(conn, msg); err != nil {
		return nil, fmt.Errorf("noiseconn: sending handshake: %w", err)
	}
	reply, err := readHandshakeFrame(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// The server hangs up without a reply when it cannot
			// decrypt our first message: we used the wrong key.
			return nil, fmt.Errorf("%w: server closed the connection during the handshake (does it have the key we pinned?)", ErrHandshake)
		}
		return nil, err
	}
	payload, tx, rx, err := hs.ReadMessage(nil, reply)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	p, err := decodePayload(payload)
	if err != nil {
		return nil, err
	}
	if p.Error != "" {
		if p.Version != version {
			return nil, fmt.Errorf("%w: server speaks version %d, this node %d: %s", ErrVersion, p.Version, version, p.Error)
		}
		return nil, fmt.Errorf("%w: %s", ErrRefused, p.Error)
	}
	if p.Version != version {
		return nil, fmt.Errorf("%w: server speaks version %d, this node %d; upgrade the older side", ErrVersion, p.Version, version)
	}
	return &Conn{conn: conn, r: r, peer: server, peerVersion: p.Version, tx: tx, rx: rx}, nil
}

// serverHandshake runs the responder side. On a version mismatch it still
// answers, with the reason, so the node can tell its user, and then returns
// an error wrapping ErrVersion.
func serverHandshake(conn net.Conn, r io.Reader, serverKey key.MachinePrivate, version int) (*Conn, error) {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   cipherSuite,
		Pattern:       noise.HandshakeIK,
		Initiator:     false,
		Prologue:      prologue,
		StaticKeypair: dhKey(serverKey),
	})
	if err != nil {
		return nil, fmt.Errorf("noiseconn: %w", err)
	}
	msg, err := readHandshakeFrame(r)
	if err != nil {
		return nil, err
	}
	payload, _, _, err := hs.ReadMessage(nil, msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	p, err := decodePayload(payload)
	if err != nil {
		return nil, err
	}
	var peerRaw [32]byte
	copy(peerRaw[:], hs.PeerStatic())
	peer := key.PublicFromRaw32[key.MachineKind](peerRaw)

	reply := handshakePayload{Version: version}
	var verr error
	if p.Version != version {
		reply.Error = fmt.Sprintf("protocol version %d is not supported; this server speaks %d; upgrade weft on the older side", p.Version, version)
		verr = fmt.Errorf("%w: node %s speaks %d, server %d", ErrVersion, peer.ShortString(), p.Version, version)
	}
	out, rx, tx, err := hs.WriteMessage(nil, reply.encode())
	if err != nil {
		return nil, fmt.Errorf("noiseconn: %w", err)
	}
	if err := writeHandshakeFrame(conn, out); err != nil {
		return nil, fmt.Errorf("noiseconn: sending handshake reply: %w", err)
	}
	if verr != nil {
		return nil, verr
	}
	return &Conn{conn: conn, r: r, peer: peer, peerVersion: p.Version, tx: tx, rx: rx}, nil
}

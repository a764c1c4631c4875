package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/box"

	"weft/internal/key"
)

// The handshake, in frames (docs/relay.md has the byte layout):
//
//	server → client  server-key:  magic, relay public key, 32-byte challenge
//	client → server  client-info: node public key, nonce, box(challenge ‖ JSON info)
//	server → client  server-info: JSON settings      — or refused: reason, close
//
// The box is sealed from the node private key to the relay's public key, so
// opening it proves the client holds the node key it names, and the fresh
// challenge inside means an old client-info cannot be replayed.

// serverMagic opens every server-key frame so that a client talking to
// something that is not a weft relay fails at once with a clear error.
const serverMagic = "WEFTRLY\x01"

const (
	challengeLen = 32
	nonceLen     = 24
	// maxHandshakePayload bounds the handshake frames, read before the
	// client is authenticated.
	maxHandshakePayload = 4 << 10
	serverKeyLen        = len(serverMagic) + key.Len + challengeLen
)

// Handshake errors.
var (
	ErrNotRelay     = errors.New("relay: peer is not a weft relay (bad magic)")
	ErrBadHandshake = errors.New("relay: malformed handshake")
	ErrBadProof     = errors.New("relay: client-info does not open with the named node key")
)

// serverKeyMsg is the payload of a server-key frame.
type serverKeyMsg struct {
	Key       key.NodePublic
	Challenge [challengeLen]byte
}

func (m serverKeyMsg) marshal() []byte {
	b := make([]byte, 0, serverKeyLen)
	b = append(b, serverMagic...)
	k := m.Key.Raw32()
	b = append(b, k[:]...)
	return append(b, m.Challenge[:]...)
}

func parseServerKey(b []byte) (serverKeyMsg, error) {
	var m serverKeyMsg
	if len(b) < len(serverMagic) || string(b[:len(serverMagic)]) != serverMagic {
		return m, ErrNotRelay
	}
	b = b[len(serverMagic):]
	if len(b) != key.Len+challengeLen {
		return m, fmt.Errorf("%w: server-key of %d bytes after magic, want %d", ErrBadHandshake, len(b), key.Len+challengeLen)
	}
	m.Key = key.PublicFromRaw32[key.NodeKind]([32]byte(b[:key.Len]))
	copy(m.Challenge[:], b[key.Len:])
	return m, nil
}

// clientInfo is the JSON sealed inside client-info.
type clientInfo struct {
	Version int `json:"version"`
	// MeshProof, set only by another relay of the mesh, is
	// HMAC-SHA256(mesh key, meshProofLabel ‖ challenge ‖ relay key ‖
	// client key). It proves the shared mesh key without sending it, and
	// is bound to this relay and this challenge so it cannot be replayed.
	MeshProof []byte `json:"mesh_proof,omitempty"`
	// Preferred says this relay is the client's home (as note-preferred).
	Preferred bool `json:"preferred,omitempty"`
}

const meshProofLabel = "weft relay mesh v1"

func meshProof(meshKey string, challenge [challengeLen]byte, server, client key.NodePublic) []byte {
	m := hmac.New(sha256.New, []byte(meshKey))
	m.Write([]byte(meshProofLabel))
	m.Write(challenge[:])
	sk, ck := server.Raw32(), client.Raw32()
	m.Write(sk[:])
	m.Write(ck[:])
	return m.Sum(nil)
}

// sealClientInfo builds a client-info payload.
func sealClientInfo(priv key.NodePrivate, sk serverKeyMsg, info clientInfo) ([]byte, error) {
	js, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("relay: encoding client info: %w", err)
	}
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("relay: nonce: %w", err)
	}
	msg := make([]byte, 0, challengeLen+len(js))
	msg = append(msg, sk.Challenge[:]...)
	msg = append(msg, js...)
	pub := priv.Public().Raw32()
	out := make([]byte, 0, key.Len+nonceLen+len(msg)+box.Overhead)
	out = append(out, pub[:]...)
	out = append(out, nonce[:]...)
	srvPub, cliPriv := sk.Key.Raw32(), priv.Raw32()
	return box.Seal(out, msg, &nonce, &srvPub, &cliPriv), nil
}

// openClientInfo checks a client-info payload against the challenge the
// server sent and returns the client's node key and info.
func openClientInfo(b []byte, serverPriv key.NodePrivate, challenge [challengeLen]byte) (key.NodePublic, clientInfo, error) {
	var info clientInfo
	if len(b) < key.Len+nonceLen+box.Overhead+challengeLen {
		return key.NodePublic{}, info, fmt.Errorf("%w: client-info of %d bytes is too short", ErrBadHandshake, len(b))
	}
	client := key.PublicFromRaw32[key.NodeKind]([32]byte(b[:key.Len]))
	nonce := [nonceLen]byte(b[key.Len : key.Len+nonceLen])
	cliPub, srvPriv := client.Raw32(), serverPriv.Raw32()
	msg, ok := box.Open(nil, b[key.Len+nonceLen:], &nonce, &cliPub, &srvPriv)
	if !ok {
		return client, info, ErrBadProof
	}
	if !hmac.Equal(msg[:challengeLen], challenge[:]) {
		return client, info, fmt.Errorf("%w: challenge does not match (replayed handshake?)", ErrBadProof)
	}
	if err := json.Unmarshal(msg[challengeLen:], &info); err != nil {
		return client, info, fmt.Errorf("%w: client info: %v", ErrBadHandshake, err)
	}
	return client, info, nil
}

// serverInfo is the JSON payload of server-info.
type serverInfo struct {
	Version int `json:"version"`
	// KeepAliveMillis is how often the server sends a keepalive when idle;
	// a client that hears nothing for a few of these may reconnect.
	KeepAliveMillis int64 `json:"keepalive_ms"`
	// RateBytesPerSec is the per-client rate limit, 0 for none.
	RateBytesPerSec int64 `json:"rate_bytes_per_sec,omitempty"`
}

func parseServerInfo(b []byte) (serverInfo, error) {
	var si serverInfo
	if err := json.Unmarshal(b, &si); err != nil {
		return si, fmt.Errorf("%w: server-info: %v", ErrBadHandshake, err)
	}
	if si.KeepAliveMillis < 0 || si.RateBytesPerSec < 0 {
		return si, fmt.Errorf("%w: server-info has negative settings", ErrBadHandshake)
	}
	return si, nil
}

package relay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"weft/internal/key"
)

// ProtocolVersion is the relay protocol spoken by this build. The client
// sends it in its client info; the server refuses versions it does not know.
// Bump it with a dated line saying why.
//
//	1 (2026-11-25): first version.
const ProtocolVersion = 1

// FrameType is the first byte of every frame.
type FrameType byte

// The frame types. Their payloads are described in docs/relay.md; the
// numbers are part of the wire format and never reused.
const (
	FrameServerKey     FrameType = 0x01 // server → client: magic, relay public key, challenge
	FrameClientInfo    FrameType = 0x02 // client → server: node key, nonce, sealed info
	FrameServerInfo    FrameType = 0x03 // server → client: handshake accepted, JSON settings
	FrameSendPacket    FrameType = 0x04 // client → server: dst key, data
	FrameRecvPacket    FrameType = 0x05 // server → client: src key, data
	FrameKeepAlive     FrameType = 0x06 // either way, empty
	FrameNotePreferred FrameType = 0x07 // client → server: 1 byte, 1 if this relay is the client's home
	FramePeerGone      FrameType = 0x08 // server → client: key, reason byte
	FramePing          FrameType = 0x09 // either way: 8 opaque bytes
	FramePong          FrameType = 0x0a // answer to a ping, same 8 bytes
	FrameRefused       FrameType = 0x0b // server → client: UTF-8 reason, then the server closes
	FrameWatchConns    FrameType = 0x0c // mesh client → server, empty
	FramePeerPresent   FrameType = 0x0d // server → mesh client: key now connected here
	FrameForwardPacket FrameType = 0x0e // mesh client → server: src key, dst key, data
)

func (t FrameType) String() string {
	switch t {
	case FrameServerKey:
		return "server-key"
	case FrameClientInfo:
		return "client-info"
	case FrameServerInfo:
		return "server-info"
	case FrameSendPacket:
		return "send-packet"
	case FrameRecvPacket:
		return "recv-packet"
	case FrameKeepAlive:
		return "keepalive"
	case FrameNotePreferred:
		return "note-preferred"
	case FramePeerGone:
		return "peer-gone"
	case FramePing:
		return "ping"
	case FramePong:
		return "pong"
	case FrameRefused:
		return "refused"
	case FrameWatchConns:
		return "watch-conns"
	case FramePeerPresent:
		return "peer-present"
	case FrameForwardPacket:
		return "forward-packet"
	}
	return fmt.Sprintf("frame-0x%02x", byte(t))
}

const (
	// frameHeaderLen is the type byte plus the big-endian uint32 length.
	frameHeaderLen = 5
	// MaxFramePayload is the largest payload a frame may carry. It is far
	// above any WireGuard packet (about 1,500 bytes) yet small enough that a
	// hostile peer cannot make either side buffer much.
	MaxFramePayload = 64 << 10
	// MaxPacketSize is the largest packet Send accepts: a frame payload less
	// the two keys a forward-packet frame carries in front of it.
	MaxPacketSize = MaxFramePayload - 2*key.Len
	// pingLen is the size of a ping/pong payload.
	pingLen = 8
)

// Errors of the frame codec.
var (
	ErrFrameTooLarge = errors.New("relay: frame too large")
	ErrShortFrame    = errors.New("relay: frame payload too short")
)

// readFrameHeader reads a frame header and checks the length against max.
func readFrameHeader(r *bufio.Reader, max uint32) (FrameType, uint32, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	t := FrameType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > max {
		return t, n, fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, t, n, max)
	}
	return t, n, nil
}

// readFrame reads one whole frame. The payload is freshly allocated, so the
// caller may keep it (the server queues it for another connection).
func readFrame(r *bufio.Reader, max uint32) (FrameType, []byte, error) {
	t, n, err := readFrameHeader(r, max)
	if err != nil {
		return t, nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return t, nil, fmt.Errorf("relay: reading %s frame: %w", t, err)
	}
	return t, b, nil
}

// writeFrameHeader writes a frame header for a payload of n bytes.
func writeFrameHeader(w *bufio.Writer, t FrameType, n int) error {
	var hdr [frameHeaderLen]byte
	hdr[0] = byte(t)
	binary.BigEndian.PutUint32(hdr[1:], uint32(n))
	_, err := w.Write(hdr[:])
	return err
}

// writeFrame writes a frame whose payload is the concatenation of parts.
// It does not flush.
func writeFrame(w *bufio.Writer, t FrameType, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > MaxFramePayload {
		return fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, t, n, MaxFramePayload)
	}
	if err := writeFrameHeader(w, t, n); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// splitKey splits a payload that starts with a node key.
func splitKey(t FrameType, b []byte) (key.NodePublic, []byte, error) {
	if len(b) < key.Len {
		return key.NodePublic{}, nil, fmt.Errorf("%w: %s needs a %d-byte key, got %d bytes", ErrShortFrame, t, key.Len, len(b))
	}
	return key.PublicFromRaw32[key.NodeKind]([32]byte(b[:key.Len])), b[key.Len:], nil
}

// PeerGoneReason says why the relay reports a peer gone.
type PeerGoneReason byte

const (
	// PeerGoneDisconnected: the peer was connected and left. Relays send
	// it to their mesh peers when a node disconnects.
	PeerGoneDisconnected PeerGoneReason = 0x00
	// PeerGoneNotHere: the peer is not connected to this relay or its
	// mesh. A sender hears it (rate-limited) when it sends to such a peer;
	// it should try another path or the peer's home region.
	PeerGoneNotHere PeerGoneReason = 0x01
)

func (r PeerGoneReason) String() string {
	switch r {
	case PeerGoneDisconnected:
		return "disconnected"
	case PeerGoneNotHere:
		return "not-here"
	}
	return fmt.Sprintf("reason-0x%02x", byte(r))
}

// parsePeerGone decodes a peer-gone payload: a key and an optional reason
// byte (absent means disconnected, so later versions may append fields).
func parsePeerGone(b []byte) (key.NodePublic, PeerGoneReason, error) {
	k, rest, err := splitKey(FramePeerGone, b)
	if err != nil {
		return k, 0, err
	}
	var r PeerGoneReason
	if len(rest) > 0 {
		r = PeerGoneReason(rest[0])
	}
	return k, r, nil
}

// parseForward decodes a forward-packet payload: src key, dst key, data.
func parseForward(b []byte) (src, dst key.NodePublic, data []byte, err error) {
	src, rest, err := splitKey(FrameForwardPacket, b)
	if err != nil {
		return src, dst, nil, err
	}
	dst, data, err = splitKey(FrameForwardPacket, rest)
	return src, dst, data, err
}

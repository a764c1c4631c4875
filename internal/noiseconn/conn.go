// Package noiseconn is weft's control-channel transport: a Noise IK session
// (Curve25519, ChaCha20-Poly1305, BLAKE2s) opened over an HTTP/1.1 Upgrade
// on the control server's one port and wrapped as a net.Conn.
//
// The node is the initiator and already knows the server's static key (it
// fetched it from /key and pinned it); its own static key is its machine
// key, so a finished handshake authenticates the machine to the server. Both
// sides put their protocol version in the handshake payload and refuse a
// version they do not speak. The wire format is in docs/protocol.md.
package noiseconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/flynn/noise"

	"weft/internal/key"
)

const (
	// MaxFrameSize is the largest ciphertext (payload plus 16-byte tag) one
	// frame may carry: the Noise message limit. A peer announcing a longer
	// frame is broken or hostile and the connection is closed.
	MaxFrameSize = noise.MaxMsgLen
	// maxPlaintext is the most plaintext one transport frame carries.
	maxPlaintext = MaxFrameSize - tagSize
	// tagSize is the ChaCha20-Poly1305 authentication tag length.
	tagSize = 16
	// headerSize is the frame header: a big-endian uint32 length.
	headerSize = 4
)

// Errors a Conn returns. Each closes the connection for good.
var (
	// ErrFrameTooLarge: the peer announced a frame over the limit.
	ErrFrameTooLarge = errors.New("noiseconn: frame too large")
	// ErrMalformedFrame: a frame too short to hold a tag, or one that
	// failed authentication.
	ErrMalformedFrame = errors.New("noiseconn: malformed frame")
)

// framePool holds full-size frame buffers. Buffers are borrowed only while a
// frame is being read or written, so an idle connection holds none; that
// keeps the server's memory per connected node small.
var framePool = sync.Pool{New: func() any {
	b := make([]byte, headerSize+MaxFrameSize)
	return &b
}}

// Conn is an established Noise session. Reads and writes may run
// concurrently with each other; concurrent Writes are serialised, as are
// concurrent Reads.
type Conn struct {
	conn net.Conn
	r    io.Reader // conn, or bytes the HTTP layer buffered followed by conn

	peer        key.MachinePublic
	peerVersion int

	rmu  sync.Mutex // guards the fields below it
	rx   *noise.CipherState
	hdr  [headerSize]byte
	rbuf *[]byte // pooled frame buffer holding unread plaintext, or nil
	rem  []byte  // unread plaintext within *rbuf
	rerr error   // sticky read error

	wmu  sync.Mutex // guards the fields below it
	tx   *noise.CipherState
	werr error // sticky write error
}

var _ net.Conn = (*Conn)(nil)

// Peer returns the peer's static key. On the server side it is the node's
// machine key, authenticated by the handshake.
func (c *Conn) Peer() key.MachinePublic { return c.peer }

// PeerVersion returns the protocol version the peer announced.
func (c *Conn) PeerVersion() int { return c.peerVersion }

// Read reads decrypted bytes. A frame that is oversized, truncated or fails
// authentication ends the connection with an error wrapping
// ErrFrameTooLarge or ErrMalformedFrame.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.rem) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readFrameLocked(); err != nil {
			c.rerr = err
			return 0, err
		}
	}
	n := copy(p, c.rem)
	c.rem = c.rem[n:]
	if len(c.rem) == 0 && c.rbuf != nil {
		framePool.Put(c.rbuf)
		c.rbuf, c.rem = nil, nil
	}
	return n, nil
}

// readFrameLocked reads and decrypts one frame into c.rem. c.rmu is held.
func (c *Conn) readFrameLocked() error {
	for {
		n, err := readFrameHeader(c.r, c.hdr[:], MaxFrameSize)
		if err != nil {
			return err
		}
		if n < tagSize {
			return fmt.Errorf("%w: %d-byte frame is shorter than its tag", ErrMalformedFrame, n)
		}
		bp := framePool.Get().(*[]byte)
		buf := (*bp)[:n]
		if _, err := io.ReadFull(c.r, buf); err != nil {
			framePool.Put(bp)
			return fmt.Errorf("noiseconn: reading %d-byte frame: %w", n, unexpectedEOF(err))
		}
		out, err := c.rx.Decrypt(buf[:0], nil, buf)
		if err != nil {
			framePool.Put(bp)
			return fmt.Errorf("%w: %v", ErrMalformedFrame, err)
		}
		if len(out) == 0 {
			// An empty frame carries nothing; it is allowed as padding.
			framePool.Put(bp)
			continue
		}
		c.rbuf, c.rem = bp, out
		return nil
	}
}

// readFrameHeader reads a 4-byte big-endian length and checks it against
// limit.
func readFrameHeader(r io.Reader, hdr []byte, limit int) (int, error) {
	if _, err := io.ReadFull(r, hdr[:headerSize]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("noiseconn: reading frame header: %w", unexpectedEOF(err))
	}
	n := binary.BigEndian.Uint32(hdr)
	if n > uint32(limit) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	return int(n), nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Write encrypts p into one or more frames and writes them.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	bp := framePool.Get().(*[]byte)
	defer framePool.Put(bp)
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxPlaintext {
			chunk = chunk[:maxPlaintext]
		}
		buf := (*bp)[:headerSize]
		out, err := c.tx.Encrypt(buf, nil, chunk)
		if err != nil {
			c.werr = fmt.Errorf("noiseconn: encrypt: %w", err)
			return written, c.werr
		}
		binary.BigEndian.PutUint32(out, uint32(len(out)-headerSize))
		if _, err := c.conn.Write(out); err != nil {
			c.werr = fmt.Errorf("noiseconn: write: %w", err)
			return written, c.werr
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.conn.Close() }

// LocalAddr returns the underlying connection's local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the underlying connection's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the underlying connection's deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the underlying connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the underlying connection's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

package noiseconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/flynn/noise"

	"weft/internal/key"
)

func FuzzDecodePayload(f *testing.F) {
	f.Add(handshakePayload{Version: 1}.encode())
	f.Add(handshakePayload{Version: 2, Error: "too old"}.encode())
	f.Add([]byte("weft"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePayload(b)
		if err != nil {
			return
		}
		if got, err := decodePayload(p.encode()); err != nil || got != p {
			t.Fatalf("re-decode of %+v = %+v, %v", p, got, err)
		}
	})
}

// FuzzServerHandshake feeds arbitrary bytes to the responder: it must fail
// cleanly, never panic or hang.
func FuzzServerHandshake(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint32(nil, 96))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 4), 1, 2, 3, 4))
	serverKey := key.NewMachine()
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := serverHandshake(discardConn{}, bytes.NewReader(b), serverKey, 1)
		if err == nil {
			t.Fatal("handshake from fuzz bytes succeeded")
		}
	})
}

// FuzzFrameReader feeds arbitrary bytes to an established Conn's reader.
func FuzzFrameReader(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint32(nil, 0))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 17), make([]byte, 17)...))
	f.Add(binary.BigEndian.AppendUint32(nil, 1<<31))
	f.Fuzz(func(t *testing.T, b []byte) {
		var k [32]byte
		c := &Conn{r: bytes.NewReader(b), rx: noise.UnsafeNewCipherState(cipherSuite, k, 0)}
		buf := make([]byte, 1024)
		for i := 0; i < 100; i++ {
			if _, err := c.Read(buf); err != nil {
				if err == io.EOF {
					return
				}
				return
			}
		}
	})
}

// discardConn is a net.Conn that swallows writes.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }

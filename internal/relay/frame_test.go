package relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"weft/internal/key"
)

func TestFrameRoundTrip(t *testing.T) {
	k := key.NewNode().Public().Raw32()
	tests := []struct {
		name  string
		t     FrameType
		parts [][]byte
	}{
		{"empty keepalive", FrameKeepAlive, nil},
		{"send-packet", FrameSendPacket, [][]byte{k[:], []byte("ciphertext")}},
		{"largest payload", FrameRecvPacket, [][]byte{make([]byte, MaxFramePayload)}},
		{"ping", FramePing, [][]byte{[]byte("12345678")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			if err := writeFrame(w, tt.t, tt.parts...); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if got, want := buf.Len(), frameHeaderLen+len(bytes.Join(tt.parts, nil)); got != want {
				t.Fatalf("encoded %d bytes, want %d", got, want)
			}
			gt, gb, err := readFrame(bufio.NewReader(&buf), MaxFramePayload)
			if err != nil {
				t.Fatal(err)
			}
			if gt != tt.t || !bytes.Equal(gb, bytes.Join(tt.parts, nil)) {
				t.Fatalf("got %s %d bytes, want %s %d bytes", gt, len(gb), tt.t, len(bytes.Join(tt.parts, nil)))
			}
		})
	}
}

func TestFrameErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		max  uint32
		want error
	}{
		{"over the limit", []byte{byte(FrameSendPacket), 0, 1, 0, 1}, MaxFramePayload, ErrFrameTooLarge},
		{"over a handshake limit", []byte{byte(FrameClientInfo), 0, 0, 0x10, 1}, maxHandshakePayload, ErrFrameTooLarge},
		{"truncated header", []byte{byte(FrameSendPacket), 0, 0}, MaxFramePayload, io.ErrUnexpectedEOF},
		{"truncated payload", []byte{byte(FrameSendPacket), 0, 0, 0, 9, 1, 2}, MaxFramePayload, io.ErrUnexpectedEOF},
		{"nothing", nil, MaxFramePayload, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in)), tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("write over the limit", func(t *testing.T) {
		w := bufio.NewWriter(io.Discard)
		if err := writeFrame(w, FrameSendPacket, make([]byte, MaxFramePayload+1)); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	})
}

func TestPayloadParsers(t *testing.T) {
	a, b := key.NewNode().Public(), key.NewNode().Public()
	ar, br := a.Raw32(), b.Raw32()
	t.Run("forward", func(t *testing.T) {
		src, dst, data, err := parseForward(bytes.Join([][]byte{ar[:], br[:], []byte("x")}, nil))
		if err != nil || src != a || dst != b || string(data) != "x" {
			t.Fatalf("got %v %v %q %v", src, dst, data, err)
		}
		if _, _, _, err := parseForward(ar[:]); !errors.Is(err, ErrShortFrame) {
			t.Fatalf("short forward: %v", err)
		}
	})
	t.Run("peer-gone", func(t *testing.T) {
		k, r, err := parsePeerGone(append(ar[:], byte(PeerGoneNotHere)))
		if err != nil || k != a || r != PeerGoneNotHere {
			t.Fatalf("got %v %v %v", k, r, err)
		}
		if _, r, err := parsePeerGone(ar[:]); err != nil || r != PeerGoneDisconnected {
			t.Fatalf("without reason: %v %v", r, err)
		}
	})
	t.Run("frame names", func(t *testing.T) {
		if FrameForwardPacket.String() != "forward-packet" || !strings.HasPrefix(FrameType(0xee).String(), "frame-0x") {
			t.Fatal("frame names")
		}
	})
}

func TestTokenBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newTokenBucket(100_000, now) // burst is one max frame
	burst := int(b.burst)
	if d := b.delay(burst, now); d != 0 {
		t.Fatalf("first burst delayed %v", d)
	}
	if d := b.delay(50_000, now); d != 500*time.Millisecond {
		t.Fatalf("over the burst: delay %v, want 500ms", d)
	}
	// A second later 100,000 tokens came back and 50,000 were owed.
	if d := b.delay(50_000, now.Add(time.Second)); d != 0 {
		t.Fatalf("after refill: delay %v, want 0", d)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame decoder and the payload
// decoders behind it: none may panic, and what decodes must re-encode to
// the same bytes.
func FuzzReadFrame(f *testing.F) {
	k := key.NewNode().Public().Raw32()
	f.Add(append([]byte{byte(FrameSendPacket), 0, 0, 0, 33}, append(k[:], 1)...))
	f.Add([]byte{byte(FrameKeepAlive), 0, 0, 0, 0})
	f.Add([]byte{byte(FrameForwardPacket), 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for {
			ft, b, err := readFrame(r, MaxFramePayload)
			if err != nil {
				return
			}
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			if err := writeFrame(w, ft, b); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if !bytes.HasPrefix(in, buf.Bytes()) {
				t.Fatalf("re-encoding differs")
			}
			in = in[buf.Len():]
			parseForward(b)
			parsePeerGone(b)
			splitKey(ft, b)
		}
	})
}

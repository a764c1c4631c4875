package relay

import (
	"bytes"
	"errors"
	"testing"

	"weft/internal/key"
)

func TestHandshakeMessages(t *testing.T) {
	srv, cli := key.NewNode(), key.NewNode()
	sk := serverKeyMsg{Key: srv.Public()}
	copy(sk.Challenge[:], bytes.Repeat([]byte{7}, challengeLen))

	t.Run("server-key round trip", func(t *testing.T) {
		got, err := parseServerKey(sk.marshal())
		if err != nil || got != sk {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("server-key bad magic", func(t *testing.T) {
		b := sk.marshal()
		b[0] ^= 1
		if _, err := parseServerKey(b); !errors.Is(err, ErrNotRelay) {
			t.Fatalf("got %v, want ErrNotRelay", err)
		}
	})

	sealed, err := sealClientInfo(cli, sk, clientInfo{Version: ProtocolVersion, Preferred: true})
	if err != nil {
		t.Fatal(err)
	}
	other := key.NewNode().Public().Raw32()
	tests := []struct {
		name      string
		payload   []byte
		priv      key.NodePrivate
		challenge [challengeLen]byte
		want      error
	}{
		{"valid", sealed, srv, sk.Challenge, nil},
		{"other relay cannot open", sealed, key.NewNode(), sk.Challenge, ErrBadProof},
		{"replayed to a new challenge", sealed, srv, [challengeLen]byte{1}, ErrBadProof},
		{"claims another node key", append(other[:], sealed[key.Len:]...), srv, sk.Challenge, ErrBadProof},
		{"truncated", sealed[:40], srv, sk.Challenge, ErrBadHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, info, err := openClientInfo(tt.payload, tt.priv, tt.challenge)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.want == nil && (k != cli.Public() || info.Version != ProtocolVersion || !info.Preferred) {
				t.Fatalf("opened %v %+v", k, info)
			}
		})
	}

	t.Run("mesh proof bound to relay and challenge", func(t *testing.T) {
		p := meshProof("secret", sk.Challenge, srv.Public(), cli.Public())
		if bytes.Equal(p, meshProof("secret", [challengeLen]byte{}, srv.Public(), cli.Public())) ||
			bytes.Equal(p, meshProof("secret", sk.Challenge, key.NewNode().Public(), cli.Public())) ||
			bytes.Equal(p, meshProof("other", sk.Challenge, srv.Public(), cli.Public())) {
			t.Fatal("mesh proof does not depend on every input")
		}
	})
	t.Run("server-info", func(t *testing.T) {
		si, err := parseServerInfo([]byte(`{"version":1,"keepalive_ms":500}`))
		if err != nil || si.KeepAliveMillis != 500 {
			t.Fatalf("got %+v %v", si, err)
		}
		if _, err := parseServerInfo([]byte(`{"keepalive_ms":-1}`)); !errors.Is(err, ErrBadHandshake) {
			t.Fatalf("negative keepalive: %v", err)
		}
	})
}

// FuzzServerKey checks the client's decoder of the first frame it reads
// from a (possibly hostile) server.
func FuzzServerKey(f *testing.F) {
	f.Add(serverKeyMsg{Key: key.NewNode().Public()}.marshal())
	f.Add([]byte(serverMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseServerKey(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.marshal(), b) {
			t.Fatal("server-key re-encodes differently")
		}
	})
}

// FuzzClientInfo checks the server's decoder of the first frame it reads
// from an unauthenticated client; nothing but a valid seal may pass.
func FuzzClientInfo(f *testing.F) {
	srv, cli := key.NewNode(), key.NewNode()
	sk := serverKeyMsg{Key: srv.Public()}
	good, _ := sealClientInfo(cli, sk, clientInfo{Version: 1})
	f.Add(good)
	f.Add(good[:key.Len+nonceLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		k, _, err := openClientInfo(b, srv, sk.Challenge)
		if err == nil && k != cli.Public() {
			t.Fatalf("opened a client-info for %v that nobody sealed", k)
		}
	})
}

// FuzzServerInfo checks the client's decoder of server-info.
func FuzzServerInfo(f *testing.F) {
	f.Add([]byte(`{"version":1,"keepalive_ms":60000}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		si, err := parseServerInfo(b)
		if err == nil && (si.KeepAliveMillis < 0 || si.RateBytesPerSec < 0) {
			t.Fatal("accepted negative settings")
		}
	})
}

package relay

import (
	"bufio"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"testing"
	"time"

	"weft/internal/key"
)

// frames concatenates frames, for fuzz seeds.
func frames(fs ...[]byte) []byte {
	var out []byte
	for _, f := range fs {
		out = append(out, f...)
	}
	return out
}

// frameBytes is one frame of type t with payload p.
func frameBytes(t FrameType, p ...[]byte) []byte {
	n := 0
	for _, x := range p {
		n += len(x)
	}
	b := []byte{byte(t), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	for _, x := range p {
		b = append(b, x...)
	}
	return b
}

// FuzzRelayServerFrameStream feeds an authenticated client's frame stream
// into a running relay: whatever the bytes, the relay must not crash, must
// close only that connection, and must go on serving the others.
func FuzzRelayServerFrameStream(f *testing.F) {
	a, b, fz := key.NewNode(), key.NewNode(), key.NewNode()
	r := startRelay(f, ServerOptions{Authorizer: allow(a, b, fz), MeshKey: "mesh", QueueLen: 8})
	ca, cb := connect(f, r.url, a), connect(f, r.url, b)
	dst := b.Public().Raw32()
	ping := make([]byte, pingLen)
	f.Add(frameBytes(FrameSendPacket, dst[:], []byte("hello")))
	f.Add(frames(frameBytes(FramePing, ping), frameBytes(FrameKeepAlive), frameBytes(FrameNotePreferred, []byte{1})))
	f.Add(frameBytes(FrameForwardPacket, dst[:], dst[:], []byte("not a mesh peer")))
	f.Add(frameBytes(FrameWatchConns))
	f.Add(frameBytes(FrameSendPacket, []byte("short")))
	f.Add([]byte{byte(FrameSendPacket), 0xff, 0xff, 0xff, 0xff})
	f.Add(frameBytes(0x7f, []byte("unknown frame")))
	fc, err := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: fz})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		cc, err := fc.dial(context.Background(), fc.urls[0])
		if err != nil {
			t.Fatal(err)
		}
		cc.nc.Write(stream)
		cc.nc.Close()
		// The relay still forwards between the others.
		if err := ca.Send(b.Public(), []byte("still")); err != nil {
			t.Fatal(err)
		}
		for {
			if p := recvPacket(t, cb); string(p.Data) == "still" {
				break
			}
		}
	})
}

// hostileRelay answers one connection like a relay up to server-info and
// then writes stream: what a compromised or buggy relay could send a node.
func hostileRelay(t *testing.T, nc net.Conn, stream []byte) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(nc)
	if _, err := http.ReadRequest(br); err != nil {
		return
	}
	bw := bufio.NewWriter(nc)
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: weft-relay\r\nConnection: Upgrade\r\n\r\n")
	priv := key.NewNode()
	sk := serverKeyMsg{Key: priv.Public()}
	rand.Read(sk.Challenge[:])
	writeFrame(bw, FrameServerKey, sk.marshal())
	bw.Flush()
	if _, _, err := readFrame(br, maxHandshakePayload); err != nil {
		return
	}
	writeFrame(bw, FrameServerInfo, mustJSON(serverInfo{Version: ProtocolVersion, KeepAliveMillis: 60000}))
	bw.Write(stream)
	bw.Flush()
}

// FuzzRelayClientHostileStream feeds a hostile relay's frames into a
// node's relay client: it must not crash or hang, whatever the relay
// sends after the handshake.
func FuzzRelayClientHostileStream(f *testing.F) {
	src := key.NewNode().Public().Raw32()
	f.Add(frameBytes(FrameRecvPacket, src[:], []byte("hello")))
	f.Add(frameBytes(FramePeerGone, src[:], []byte{byte(PeerGoneNotHere)}))
	f.Add(frames(frameBytes(FramePong, make([]byte, pingLen)), frameBytes(FrameKeepAlive), frameBytes(FramePeerPresent, src[:])))
	f.Add(frameBytes(FrameRecvPacket, []byte("short")))
	f.Add([]byte{byte(FrameRecvPacket), 0x7f, 0xff, 0xff, 0xff})
	f.Add(frameBytes(FrameServerInfo, []byte("{")))
	f.Fuzz(func(t *testing.T, stream []byte) {
		c, err := NewClient(ClientOptions{
			URLs:       []string{"http://relay.invalid"},
			NodeKey:    key.NewNode(),
			MinBackoff: time.Hour, // one connection per run
			Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
				client, server := net.Pipe()
				go hostileRelay(t, server, stream)
				return client, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			return
		}
		for {
			rctx, rcancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := c.Recv(rctx)
			rcancel()
			if err != nil {
				return
			}
		}
	})
}

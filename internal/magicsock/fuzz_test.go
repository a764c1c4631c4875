package magicsock

import (
	"errors"
	"net/netip"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/disco"
	"weft/internal/key"
)

// FuzzHandleDisco feeds arbitrary packets, and packets sealed by a known
// peer around arbitrary plaintext, to the disco handler, over a direct
// source and through the relay. It must never panic; whatever it queues
// in reply must be a sealed disco packet.
func FuzzHandleDisco(f *testing.F) {
	self, peerDisco, peerNode := key.NewDisco(), key.NewDisco(), key.NewNode()
	shared := disco.NewSharedKey(peerDisco, self.Public())
	f.Add([]byte{}, false)
	f.Add((&disco.Ping{TxID: disco.NewTxID(), NodeKey: peerNode.Public()}).AppendMarshal(nil), false)
	f.Add((&disco.CallMeMaybe{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:1")}}).AppendMarshal(nil), true)
	f.Add((&disco.PortGuess{Public: netip.MustParseAddrPort("198.51.100.1:1"), Sockets: 1, Probes: 1}).AppendMarshal(nil), true)
	f.Fuzz(func(t *testing.T, plain []byte, viaRelay bool) {
		rec := &recorder{}
		c, err := New(Options{DiscoKey: self, NodeKey: key.NewNode().Public(), Relay: rec, Network: rec})
		if err != nil {
			t.Fatal(err)
		}
		c.SetPeers([]Peer{{NodeKey: peerNode.Public(), DiscoKey: peerDisco.Public(), HomeRegion: 1}})
		src := source{addr: netip.MustParseAddrPort("203.0.113.5:999")}
		if viaRelay {
			src = source{relay: true, region: 1, nodeKey: peerNode.Public()}
		}
		// The raw bytes, and the bytes sealed by the peer.
		c.handleDisco(plain, src)
		c.handleDisco(append([]byte(disco.Magic), plain...), src)
		c.mu.Lock()
		pkt := shared.Seal(rawMessage(plain))
		c.mu.Unlock()
		c.handleDisco(pkt, src)
		for _, pkt := range rec.sent {
			if !disco.LooksLikeDisco(pkt) {
				t.Fatalf("sent a non-disco packet: %x", pkt)
			}
		}
	})
}

// recorder is a Relay and a Network whose bind records what is sent.
type recorder struct {
	mu   sync.Mutex
	sent [][]byte
}

func (r *recorder) record(b []byte) {
	r.mu.Lock()
	r.sent = append(r.sent, append([]byte(nil), b...))
	r.mu.Unlock()
}

func (r *recorder) Send(region int, dst key.NodePublic, pkt []byte) error {
	r.record(pkt)
	return nil
}

func (r *recorder) NewBind() conn.Bind { return recBind{conn.NewStdNetBind(), r} }
func (r *recorder) ListenUDP4(uint32) (PacketConn, error) {
	return nil, errors.New("recorder: no sockets")
}
func (r *recorder) LocalAddrs() ([]netip.Addr, error) { return nil, nil }

type recBind struct {
	conn.Bind
	r *recorder
}

func (b recBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	for _, p := range bufs {
		b.r.record(p)
	}
	return nil
}

// rawMessage is a disco.Message whose plaintext is given.
type rawMessage []byte

func (m rawMessage) AppendMarshal(b []byte) []byte { return append(b, m...) }

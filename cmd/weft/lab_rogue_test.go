//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/magicsock"
	"weft/internal/relay"
	"weft/internal/scenario"
	"weft/internal/wire"
)

// rogue is a modified tailnet node run inside the test: it registers with
// the control server like any node (every connection dialled from one
// lab host's namespace), then sets its WireGuard peers' allowed IPs as it
// likes, as a compromised node could. It talks only through the relay
// and has no TUN of its own: the test writes raw IP packets into a
// channel TUN.
type rogue struct {
	t    testing.TB
	addr netip.Addr // its tailnet IPv4 address
	tun  *tuntest.ChannelTUN
	dev  *device.Device
	conn *magicsock.Conn
	nm   atomic.Pointer[controlclient.NetMap]
	out  *recordingRelay
	peer *wire.Node // the peer route set up
}

// recordingRelay is the rogue's relay, which can keep copies of the
// WireGuard data packets the rogue sends, for replaying them.
type recordingRelay struct {
	*relay.Manager
	mu     sync.Mutex
	on     bool
	copies [][]byte
}

// Send implements magicsock.Relay.
func (r *recordingRelay) Send(region int, dst key.NodePublic, pkt []byte) error {
	r.mu.Lock()
	if r.on && len(pkt) > 0 && pkt[0] == 4 { // WireGuard transport data
		r.copies = append(r.copies, append([]byte(nil), pkt...))
	}
	r.mu.Unlock()
	return r.Manager.Send(region, dst, pkt)
}

// record starts keeping copies (on) or stops and returns those kept.
func (r *recordingRelay) record(on bool) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = on
	out := r.copies
	r.copies = nil
	return out
}

// replay sends pkt again, unchanged, to the peer route set up, through
// its home relay region.
func (r *rogue) replay(pkt []byte) {
	r.t.Helper()
	if err := r.out.Manager.Send(r.peer.HomeRegion, r.peer.NodeKey, pkt); err != nil {
		r.t.Fatal(err)
	}
}

// startRogue registers a rogue node from host's namespace and brings its
// WireGuard up; it is torn down when the test ends.
func startRogue(t testing.TB, ctx context.Context, l *exitLab, host string) *rogue {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	r := &rogue{t: t, tun: tuntest.NewChannelTUN()}
	node := l.lab.Node(host)
	nk, dk := key.NewNode(), key.NewDisco()
	client, err := controlclient.New(controlclient.Options{
		ServerURL: l.tn.ServerURL, MachineKey: key.NewMachine(), NodeKey: nk, DiscoKey: dk.Public(),
		Hostinfo:    &wire.Hostinfo{Hostname: "rogue", OS: "linux"},
		DialContext: node.DialContext,
		OnMap:       func(nm *controlclient.NetMap) { r.nm.Store(nm) },
	})
	if err != nil {
		t.Fatal(err)
	}
	self, err := client.Register(ctx, l.tn.AuthKey, key.NodePublic{})
	if err != nil {
		t.Fatalf("rogue: register: %v", err)
	}
	for _, a := range self.Addresses {
		if a.Addr().Is4() {
			r.addr = a.Addr()
		}
	}
	wg.Add(1)
	go func() { defer wg.Done(); client.Run(ctx) }()
	err = scenario.WaitFor(ctx, 20*time.Second, "the rogue's first map", func() (bool, error) {
		nm := r.nm.Load()
		return nm != nil && nm.RelayMap != nil && len(nm.RelayMap.Regions) > 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rm := r.nm.Load().RelayMap
	region := 0
	for id := range rm.Regions {
		if region == 0 || id < region {
			region = id
		}
	}
	relays, err := relay.NewManager(relay.ManagerOptions{
		NodeKey: nk, RelayMap: rm, Dialer: node.DialContext,
		OnRecv: func(region int, src key.NodePublic, data []byte) { r.conn.InjectRelayed(region, src, data) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.out = &recordingRelay{Manager: relays}
	r.conn, err = magicsock.New(magicsock.Options{DiscoKey: dk, NodeKey: nk.Public(), Relay: r.out, Network: relayOnlyNet{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := relays.SetHome(region); err != nil {
		t.Fatal(err)
	}
	client.SetEndpoints(nil, region)
	r.dev = device.NewDevice(r.tun.TUN(), r.conn, device.NewLogger(device.LogLevelSilent, ""))
	if err := r.dev.IpcSet(fmt.Sprintf("private_key=%s\n", hex.EncodeToString(raw(nk.Raw32())))); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Up(); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-r.tun.Inbound:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		r.dev.Close()
		relays.Close()
		wg.Wait()
	})
	return r
}

func raw(k [32]byte) []byte { return k[:] }

// route makes the rogue send packets for prefixes to the peer named name,
// whatever the map says that peer may receive.
func (r *rogue) route(name string, prefixes ...netip.Prefix) {
	r.t.Helper()
	var peer *wire.Node
	err := scenario.WaitFor(context.Background(), 20*time.Second, "peer "+name+" in the rogue's map", func() (bool, error) {
		if nm := r.nm.Load(); nm != nil {
			for _, n := range nm.SortedPeers() {
				if n.Name == name {
					peer = n
				}
			}
		}
		return peer != nil && peer.HomeRegion != 0, nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.peer = peer
	r.conn.SetPeers([]magicsock.Peer{magicsock.PeerFromNode(peer)})
	var b strings.Builder
	pk := peer.NodeKey.Raw32()
	fmt.Fprintf(&b, "public_key=%s\nendpoint=%s\nreplace_allowed_ips=true\n", hex.EncodeToString(pk[:]), peer.NodeKey)
	for _, p := range prefixes {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	if err := r.dev.IpcSet(b.String()); err != nil {
		r.t.Fatal(err)
	}
}

// sendUDP sends one UDP datagram from the rogue's tailnet address into
// the tunnel.
func (r *rogue) sendUDP(dst netip.AddrPort, payload string) {
	r.tun.Outbound <- udp4Packet(netip.AddrPortFrom(r.addr, 40000), dst, []byte(payload))
}

// udp4Packet is an IPv4 UDP datagram (no UDP checksum, which IPv4 allows).
func udp4Packet(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// relayOnlyNet is a magicsock.Network without sockets: the rogue reaches
// peers through the relay alone, and nothing is bound in the test
// process's own namespace.
type relayOnlyNet struct{}

func (relayOnlyNet) NewBind() conn.Bind { return relayOnlyBind{conn.NewStdNetBind()} }
func (relayOnlyNet) ListenUDP4(uint32) (magicsock.PacketConn, error) {
	return nil, errors.New("rogue: relay only")
}
func (relayOnlyNet) LocalAddrs() ([]netip.Addr, error) { return nil, nil }

// relayOnlyBind opens nothing and sends nothing; only its endpoint
// parsing is used.
type relayOnlyBind struct{ conn.Bind }

func (relayOnlyBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) { return nil, 0, nil }
func (relayOnlyBind) Close() error                                    { return nil }
func (relayOnlyBind) SetMark(uint32) error                            { return nil }
func (relayOnlyBind) Send([][]byte, conn.Endpoint) error              { return nil }

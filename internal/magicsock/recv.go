package magicsock

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/disco"
	"weft/internal/key"
)

// wrapReceive wraps a main-socket ReceiveFunc: disco packets are handled
// here, STUN goes to netcheck, and WireGuard packets get the endpoint of
// the peer their source address belongs to. Packets from addresses no peer
// owns are dropped (their size set to zero), since wireguard-go would
// otherwise roam the peer onto an address the Conn knows nothing of.
//
// A batch mostly holds runs of packets from one address (UDP GRO splits
// one coalesced datagram into many), so the peer is looked up, and its
// path marked heard, once per run rather than per packet
// (BenchmarkBindPath).
func (c *Conn) wrapReceive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n, err := fn(bufs, sizes, eps)
			if err != nil {
				return n, err
			}
			addrs := *c.byAddr.Load()
			kept, woke := 0, false
			var now int64 // read once per batch, when first needed
			var runSrc netip.AddrPort
			var run *peer // the peer of runSrc; nil: look up again
			for i := range n {
				if sizes[i] == 0 {
					continue
				}
				pkt := bufs[i][:sizes[i]]
				var src netip.AddrPort
				if se, ok := eps[i].(*conn.StdNetEndpoint); ok {
					src = netip.AddrPortFrom(se.Addr().Unmap(), se.Port())
				}
				switch {
				case c.isWake(pkt, src):
					sizes[i] = 0
					woke = true
				case disco.LooksLikeDisco(pkt):
					c.handleDisco(pkt, source{addr: src})
					sizes[i] = 0
					run = nil // a pong may have moved the path
				case isSTUN(pkt):
					if c.opts.OnSTUN != nil {
						c.opts.OnSTUN(append([]byte(nil), pkt...), src)
					}
					sizes[i] = 0
				default:
					if run == nil || src != runSrc {
						run, runSrc = addrs[src], src
						if run == nil {
							sizes[i] = 0
							continue
						}
						if pa := run.path.Load(); pa != nil && pa.sock == nil && pa.addr == src {
							if now == 0 {
								now = time.Now().UnixNano()
							}
							run.heard.Store(now)
						}
					}
					eps[i] = run.ep
					kept++
				}
			}
			// All of the batch was disco, STUN or strangers: read
			// again rather than wake wireguard-go for nothing, unless
			// WakeReceivers asked for the empty batch.
			if kept > 0 || n == 0 || woke {
				return n, nil
			}
		}
	}
}

// receiveInjected is the extra ReceiveFunc: WireGuard packets that came
// through the relay or an extra socket.
func (c *Conn) receiveInjected(closed chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var in inbound
		select {
		case <-closed:
			return 0, net.ErrClosed
		case <-c.wakeInjected:
			return 0, nil
		case in = <-c.injected:
		}
		n := 0
		for {
			sizes[n] = copy(bufs[n], in.pkt)
			eps[n] = in.p.ep
			n++
			if n == len(bufs) {
				return n, nil
			}
			select {
			case in = <-c.injected:
			default:
				return n, nil
			}
		}
	}
}

// InjectRelayed takes a packet the relay delivered from src. The relay
// client calls it (its receive callback) for every packet; pkt is not kept.
func (c *Conn) InjectRelayed(region int, src key.NodePublic, pkt []byte) {
	if disco.LooksLikeDisco(pkt) {
		c.handleDisco(pkt, source{relay: true, region: region, nodeKey: src})
		return
	}
	c.mu.Lock()
	p := c.peers[src]
	c.mu.Unlock()
	if p == nil {
		return
	}
	if p.path.Load() != nil {
		p.relayedIn.Store(time.Now().UnixNano())
	}
	c.inject(p, pkt)
}

func (c *Conn) inject(p *peer, pkt []byte) {
	select {
	case c.injected <- inbound{pkt: append([]byte(nil), pkt...), p: p}:
	default:
		// Full: drop, as a congested socket would.
		c.injectDrops.Add(1)
	}
}

// InjectDrops counts the packets from the relay and extra sockets dropped
// because wireguard-go did not take them fast enough (the queue holds
// 1,024).
func (c *Conn) InjectDrops() uint64 { return c.injectDrops.Load() }

// source says where a disco packet came from.
type source struct {
	addr    netip.AddrPort // direct: the sender's address as we saw it
	sock    *extraSock     // direct: the extra socket it arrived on; nil = main
	relay   bool
	region  int
	nodeKey key.NodePublic // relay: the sender the relay vouches for
}

func (s source) String() string {
	if s.relay {
		return "relay"
	}
	return s.addr.String()
}

// isSTUN reports whether pkt is a STUN message: the magic cookie at bytes
// 4–8 and a length field matching the packet. The length check matters:
// a WireGuard data packet carries a random receiver index at bytes 4–8 and
// zeros at 1–3, so the cookie alone would misroute one session in 2^32.
func isSTUN(pkt []byte) bool {
	return len(pkt) >= 20 && pkt[0]&0xc0 == 0 &&
		binary.BigEndian.Uint32(pkt[4:8]) == 0x2112a442 &&
		int(binary.BigEndian.Uint16(pkt[2:4]))+20 == len(pkt)
}

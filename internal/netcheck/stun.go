package netcheck

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/stun/v3"

	"weft/internal/wire"
)

// STUN probing: every STUN server of every region gets stunTries Binding
// requests, stunSpacing apart, each with its own transaction ID. The best
// RTT per region is its latency; the mapped addresses seen by different
// servers tell whether the NAT's mapping depends on the destination.
const (
	defaultSTUNPort = 3478
	stunTries       = 3
	stunSpacing     = 100 * time.Millisecond
	lookupTimeout   = time.Second
)

// IsSTUN reports whether pkt looks like a STUN message (it carries the
// STUN magic cookie), so a caller sharing its socket knows which packets to
// hand to ReceiveSTUNPacket.
func IsSTUN(pkt []byte) bool { return stun.IsMessage(pkt) }

// target is one STUN server address to probe.
type target struct {
	region int
	node   string
	addr   netip.AddrPort
}

// stunAnswer is one STUN success response matched to its request.
type stunAnswer struct {
	target target
	mapped netip.AddrPort
	rtt    time.Duration
}

// stunTx is one STUN request in flight.
type stunTx struct {
	target  target
	sent    time.Time
	answers chan<- stunAnswer // buffered for every request of the report
}

// resolveTargets lists the STUN servers of rm, resolving DNS names (one
// IPv4 and one IPv6 address each, unless the node's ipv4 or ipv6 gives
// that family) concurrently with a short timeout. A node whose Host is an
// IP literal is probed there and at its other family's address, if the
// map gives one.
// Duplicate addresses are probed once, for the first region listing them.
func resolveTargets(ctx context.Context, log *slog.Logger, rm *wire.RelayMap) []target {
	type job struct {
		region int
		node   *wire.RelayNode
		addrs  []netip.Addr
	}
	var jobs []*job
	for _, id := range slices.Sorted(maps.Keys(rm.Regions)) {
		reg := rm.Regions[id]
		if reg == nil {
			continue
		}
		for _, n := range reg.Nodes {
			if n == nil || n.STUNPort < 0 || n.Host == "" {
				continue
			}
			jobs = append(jobs, &job{region: id, node: n})
		}
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		// Addresses the map gives (Host as an IP literal, the node's
		// IPv4 and IPv6) are used as they are; a DNS name is resolved
		// only for a family the map does not give.
		j.addrs = j.node.Addrs()
		if _, err := netip.ParseAddr(j.node.Host); err == nil || (j.node.IPv4.IsValid() && j.node.IPv6.IsValid()) {
			continue
		}
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			ips, err := net.DefaultResolver.LookupNetIP(lctx, "ip", j.node.Host)
			if err != nil {
				log.Debug("netcheck: resolve relay", "host", j.node.Host, "err", err)
				return
			}
			has4, has6 := j.node.IPv4.IsValid(), j.node.IPv6.IsValid()
			for _, ip := range ips {
				ip = ip.Unmap()
				if ip.Is4() && !has4 {
					has4 = true
					j.addrs = append(j.addrs, ip)
				} else if ip.Is6() && !has6 {
					has6 = true
					j.addrs = append(j.addrs, ip)
				}
			}
		})
	}
	wg.Wait()
	var out []target
	seen := map[netip.AddrPort]bool{}
	for _, j := range jobs {
		port := j.node.STUNPort
		if port == 0 {
			port = defaultSTUNPort
		}
		for _, ip := range j.addrs {
			ap := netip.AddrPortFrom(ip, uint16(port))
			if seen[ap] || port > 65535 {
				continue
			}
			seen[ap] = true
			out = append(out, target{region: j.region, node: j.node.Name, addr: ap})
		}
	}
	return out
}

// probeSTUN sends the Binding requests and collects answers until every
// request is answered or ctx is done.
func (c *Client) probeSTUN(ctx context.Context, send func([]byte, netip.AddrPort) error, targets []target) []stunAnswer {
	answers := make(chan stunAnswer, len(targets)*stunTries)
	var txids []txID
	defer func() {
		c.mu.Lock()
		for _, id := range txids {
			delete(c.inflight, id)
		}
		c.mu.Unlock()
	}()

	var got []stunAnswer
	pending := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	tries := 0
	for {
		select {
		case <-timer.C:
			for _, t := range targets {
				id, ok := c.sendRequest(send, t, answers)
				if ok {
					txids = append(txids, id)
					pending++
				}
			}
			tries++
			if tries < stunTries {
				timer.Reset(stunSpacing)
			}
		case a := <-answers:
			got = append(got, a)
			pending--
		case <-ctx.Done():
			return got
		}
		if tries == stunTries && pending == 0 {
			return got
		}
	}
}

// sendRequest registers and sends one Binding request to t.
func (c *Client) sendRequest(send func([]byte, netip.AddrPort) error, t target, answers chan<- stunAnswer) (txID, bool) {
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return txID{}, false
	}
	tx := &stunTx{target: t, sent: time.Now(), answers: answers}
	c.mu.Lock()
	if c.inflight == nil {
		c.inflight = make(map[txID]*stunTx)
	}
	c.inflight[m.TransactionID] = tx
	c.mu.Unlock()
	if err := send(m.Raw, t.addr); err != nil {
		c.logger().Debug("netcheck: send STUN", "to", t.addr, "err", err)
		c.mu.Lock()
		delete(c.inflight, m.TransactionID)
		c.mu.Unlock()
		return txID{}, false
	}
	return m.TransactionID, true
}

// ReceiveSTUNPacket hands the Client a STUN packet received from src on
// the caller's socket (see Client.SendPacket). Packets that do not answer
// one of the Client's requests are ignored. It never blocks and does not
// keep pkt.
func (c *Client) ReceiveSTUNPacket(pkt []byte, src netip.AddrPort) {
	if !stun.IsMessage(pkt) {
		return
	}
	now := time.Now()
	var m stun.Message
	m.Raw = append([]byte(nil), pkt...)
	if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
		return
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	c.mu.Lock()
	tx := c.inflight[m.TransactionID]
	if tx == nil || tx.target.addr != src {
		c.mu.Unlock()
		return
	}
	delete(c.inflight, m.TransactionID)
	c.mu.Unlock()

	mapped, ok := mappedAddr(&m)
	if !ok {
		return
	}
	select {
	case tx.answers <- stunAnswer{target: tx.target, mapped: mapped, rtt: now.Sub(tx.sent)}:
	default:
	}
}

// mappedAddr reads XOR-MAPPED-ADDRESS, or the old MAPPED-ADDRESS that
// some servers still send instead.
func mappedAddr(m *stun.Message) (netip.AddrPort, bool) {
	var ip net.IP
	var port int
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err == nil {
		ip, port = xor.IP, xor.Port
	} else {
		var plain stun.MappedAddress
		if err := plain.GetFrom(m); err != nil {
			return netip.AddrPort{}, false
		}
		ip, port = plain.IP, plain.Port
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// sockets are the standalone Client's own UDP sockets, one per address
// family the targets need, each with a reader goroutine that lives until
// close.
type sockets struct {
	v4, v6 *net.UDPConn
	wg     sync.WaitGroup
}

func openSockets(targets []target, recv func([]byte, netip.AddrPort)) (*sockets, error) {
	var need4, need6 bool
	for _, t := range targets {
		if t.addr.Addr().Is4() {
			need4 = true
		} else {
			need6 = true
		}
	}
	s := &sockets{}
	var errs []error
	if need4 {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			errs = append(errs, err)
		}
		s.v4 = c
	}
	if need6 {
		c, err := net.ListenUDP("udp6", nil)
		if err != nil {
			errs = append(errs, err)
		}
		s.v6 = c
	}
	if s.v4 == nil && s.v6 == nil {
		return nil, fmtErr("listen", errors.Join(errs...))
	}
	for _, c := range []*net.UDPConn{s.v4, s.v6} {
		if c == nil {
			continue
		}
		s.wg.Go(func() {
			buf := make([]byte, 1500)
			for errs := 0; errs < 100; {
				n, src, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					// An ICMP error surfacing on the socket; keep
					// reading until close, but not forever on a
					// socket that only errs.
					errs++
					continue
				}
				recv(buf[:n], src)
			}
		})
	}
	return s, nil
}

func (s *sockets) send(pkt []byte, dst netip.AddrPort) error {
	c := s.v6
	if dst.Addr().Is4() {
		c = s.v4
	}
	if c == nil {
		return errors.New("netcheck: no socket for the address family of " + dst.String())
	}
	_, err := c.WriteToUDPAddrPort(pkt, dst)
	return err
}

func (s *sockets) close() {
	if s.v4 != nil {
		s.v4.Close()
	}
	if s.v6 != nil {
		s.v6.Close()
	}
	s.wg.Wait()
}

// txID is a STUN transaction ID.
type txID = [stun.TransactionIDSize]byte

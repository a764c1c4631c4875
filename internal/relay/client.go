package relay

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"weft/internal/key"
)

// Message is what Client.Recv returns: a ReceivedPacket or a PeerGone.
type Message interface{ relayMessage() }

// ReceivedPacket is a packet another node sent us through the relay.
type ReceivedPacket struct {
	Src  key.NodePublic
	Data []byte
}

// PeerGone says the relay cannot reach a peer we sent to: it is not
// connected there (or it left).
type PeerGone struct {
	Key    key.NodePublic
	Reason PeerGoneReason
}

// peerPresent and connState reach only mesh links (watchConns clients).
type peerPresent struct{ Key key.NodePublic }
type connState struct{ up bool }

func (ReceivedPacket) relayMessage() {}
func (PeerGone) relayMessage()       {}
func (peerPresent) relayMessage()    {}
func (connState) relayMessage()      {}

// Client errors.
var (
	ErrClosed    = errors.New("relay: client closed")
	ErrQueueFull = errors.New("relay: send queue full, packet dropped")
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// URLs are the relay's addresses ("https://relay.example",
	// "http://10.0.0.1:8080"); the path /relay is implied. After a failed
	// attempt the client moves to the next, so the servers of one region
	// may all be listed. At least one is required.
	URLs []string
	// NodeKey is the node's private key, which the relay checks.
	NodeKey key.NodePrivate
	// Dialer opens TCP connections; nil uses a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is used for https URLs; nil uses the system roots with
	// the URL's host as server name.
	TLSConfig *tls.Config
	// Preferred tells the relay it is this node's home from the start.
	Preferred bool
	// MinBackoff and MaxBackoff bound the wait between reconnect attempts
	// (each wait is jittered); zero means 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger

	// meshKey and watchConns make the client a mesh link of another
	// relay; only this package sets them.
	meshKey    string
	watchConns bool
	// altAddrs, set by the Manager from the relay map, gives for a URL's
	// host:port the relay's other addresses, raced with it (see dial).
	altAddrs map[string][]string
	// handshakeTimeout, set by tests, bounds each dial; zero means the
	// package's handshakeTimeout.
	handshakeTimeout time.Duration
	// onDown, set by the Manager, hears from the run loop that the
	// relay cannot be used: a working connection was lost, or an attempt
	// to connect failed. Both matter to the home region: a relay that
	// died while this client was between attempts is noticed only as a
	// failed attempt.
	onDown func()
}

// Client is one node's connection to one relay (or region). It connects in
// the background, reconnects with jittered exponential backoff, and keeps
// the connection alive. All methods are safe for concurrent use.
type Client struct {
	opts ClientOptions
	urls []*url.URL
	log  *slog.Logger

	recv   chan Message    // filled by the read loop, drained by Recv
	sendq  chan outPacket  // filled by Send, drained by each connection's writer
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the run loop has ended (if started)

	mu        sync.Mutex
	started   bool          // run loop launched
	cur       *clientConn   // live connection, nil between connections
	up        chan struct{} // closed when cur is set; replaced when it drops
	tried     chan struct{} // closed after each failed attempt; replaced
	lastErr   error         // of the last failed attempt
	pings     map[[pingLen]byte]chan struct{}
	preferred bool
	// attempt cancels the dial in progress; nil between dials.
	attempt context.CancelFunc

	// redial, of capacity one, carries Redial's request to the run loop:
	// connect again now, from MinBackoff.
	redial chan struct{}

	checking atomic.Bool    // a Check is running
	checks   sync.WaitGroup // Check's goroutines, waited for by Close
}

// sendQueueLen bounds the packets waiting to be written, also while the
// client is (re)connecting; beyond it Send drops, as a full link would.
const sendQueueLen = 512

// outPacket is a queued send-packet (or, for mesh links, forward-packet).
type outPacket struct {
	t        FrameType
	src, dst key.NodePublic
	data     []byte
}

// clientConn is one established connection.
type clientConn struct {
	nc        net.Conn
	br        *bufio.Reader
	serverKey key.NodePublic
	info      serverInfo

	wmu sync.Mutex // guards bw and ordered writes to nc
	bw  *bufio.Writer
}

// NewClient checks opts and makes a Client; nothing is dialled until
// Connect, Send or Ping.
func NewClient(opts ClientOptions) (*Client, error) {
	if len(opts.URLs) == 0 {
		return nil, errors.New("relay: client needs at least one relay URL")
	}
	if opts.NodeKey.IsZero() {
		return nil, errors.New("relay: client needs a node key")
	}
	var urls []*url.URL
	for _, s := range opts.URLs {
		u, err := parseRelayURL(s)
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Dialer == nil {
		var d net.Dialer
		opts.Dialer = d.DialContext
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		opts:      opts,
		urls:      urls,
		log:       log.With("component", "relay-client", "relay", opts.URLs[0]),
		recv:      make(chan Message, 64),
		sendq:     make(chan outPacket, sendQueueLen),
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		up:        make(chan struct{}),
		tried:     make(chan struct{}),
		pings:     make(map[[pingLen]byte]chan struct{}),
		preferred: opts.Preferred,
		redial:    make(chan struct{}, 1),
	}, nil
}

func parseRelayURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("relay: bad relay URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("relay: relay URL %q must start with http:// or https://", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("relay: relay URL %q has no host", s)
	}
	return u, nil
}

// start launches the run loop once, unless the client is closed.
func (c *Client) start() {
	c.mu.Lock()
	c.startLocked()
	c.mu.Unlock()
}

// startLocked is start with c.mu held.
func (c *Client) startLocked() {
	if c.started || c.ctx.Err() != nil {
		return
	}
	c.started = true
	go c.run()
}

// Connect starts the client if needed and waits until it is connected or
// its first attempt since the call fails; the error is then that attempt's
// (a refusal wraps ErrRefused with the relay's reason). Either way the
// client keeps retrying in the background until Close.
func (c *Client) Connect(ctx context.Context) error {
	c.start()
	c.mu.Lock()
	if c.cur != nil {
		c.mu.Unlock()
		return nil
	}
	up, tried := c.up, c.tried
	c.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-tried:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.lastErr
	case <-c.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitUp waits until connected; unlike Connect it does not give up after a
// failed attempt.
func (c *Client) waitUp(ctx context.Context) (*clientConn, error) {
	c.start()
	for {
		c.mu.Lock()
		cur, up := c.cur, c.up
		c.mu.Unlock()
		if cur != nil {
			return cur, nil
		}
		select {
		case <-up:
		case <-c.ctx.Done():
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ServerKey returns the public key of the relay the client is connected
// to, or the zero key when it is not connected.
func (c *Client) ServerKey() key.NodePublic {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return key.NodePublic{}
	}
	return c.cur.serverKey
}

// Send queues pkt for the node dst and returns without waiting: one
// writer per connection drains the queue, many packets per write. While
// the client is (re)connecting, packets wait in the queue. When it is full
// the packet is dropped and Send returns ErrQueueFull, so a sender is never
// blocked by the relay (a caller that wants back-pressure may retry). pkt
// may be reused once Send returns.
func (c *Client) Send(dst key.NodePublic, pkt []byte) error {
	return c.enqueue(outPacket{t: FrameSendPacket, dst: dst, data: pkt}, false)
}

// forward queues a forward-packet (mesh links only). It takes ownership of
// pkt, which the server read into a buffer of its own.
func (c *Client) forward(src, dst key.NodePublic, pkt []byte) error {
	return c.enqueue(outPacket{t: FrameForwardPacket, src: src, dst: dst, data: pkt}, true)
}

func (c *Client) enqueue(p outPacket, owned bool) error {
	if len(p.data) > MaxPacketSize {
		return fmt.Errorf("%w: packet of %d bytes, limit %d", ErrFrameTooLarge, len(p.data), MaxPacketSize)
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	c.start()
	if !owned {
		p.data = append([]byte(nil), p.data...)
	}
	select {
	case c.sendq <- p:
		return nil
	default:
		return ErrQueueFull
	}
}

// writePackets writes queued packets to cc until stop closes or a write
// fails; it batches whatever is queued into one flush.
func (c *Client) writePackets(cc *clientConn, stop <-chan struct{}) {
	for {
		var p outPacket
		select {
		case <-stop:
			return
		case p = <-c.sendq:
		}
		cc.wmu.Lock()
		err := cc.writePacket(p)
		for i := 0; err == nil && i < 64; i++ {
			select {
			case p = <-c.sendq:
				err = cc.writePacket(p)
				continue
			default:
			}
			break
		}
		if err == nil {
			err = cc.bw.Flush()
		}
		cc.wmu.Unlock()
		if err != nil {
			cc.nc.Close() // the read loop notices and reconnects
			return
		}
	}
}

// writePacket writes p without flushing; cc.wmu must be held.
func (cc *clientConn) writePacket(p outPacket) error {
	d := p.dst.Raw32()
	if p.t == FrameForwardPacket {
		s := p.src.Raw32()
		return writeFrame(cc.bw, p.t, s[:], d[:], p.data)
	}
	return writeFrame(cc.bw, p.t, d[:], p.data)
}

// write writes and flushes one frame. A failed write closes the
// connection, so the read loop notices and reconnects.
func (cc *clientConn) write(t FrameType, parts ...[]byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	err := writeFrame(cc.bw, t, parts...)
	if err == nil {
		err = cc.bw.Flush()
	}
	if err != nil {
		cc.nc.Close()
		return fmt.Errorf("relay: writing %s: %w", t, err)
	}
	return nil
}

// Recv returns the next packet or peer-gone notice. It returns ErrClosed
// once the client is closed. Until Recv is called again, the client stops
// reading from the relay, whose bounded queue for us then drops packets.
func (c *Client) Recv(ctx context.Context) (Message, error) {
	c.start()
	select {
	case m := <-c.recv:
		return m, nil
	case <-c.ctx.Done():
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// NotePreferred tells the relay whether it is this node's home.
func (c *Client) NotePreferred(preferred bool) {
	c.mu.Lock()
	c.preferred = preferred
	cc := c.cur
	c.mu.Unlock()
	if cc != nil {
		b := byte(0)
		if preferred {
			b = 1
		}
		cc.write(FrameNotePreferred, []byte{b})
	}
}

// Ping measures the round trip to the relay with a ping frame, connecting
// first if needed (the connection time is not counted).
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	cc, err := c.waitUp(ctx)
	if err != nil {
		return 0, err
	}
	var id [pingLen]byte
	rand.Read(id[:])
	ch := make(chan struct{})
	c.mu.Lock()
	c.pings[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pings, id)
		c.mu.Unlock()
	}()
	start := time.Now()
	if err := cc.write(FramePing, id[:]); err != nil {
		return 0, err
	}
	select {
	case <-ch:
		return time.Since(start), nil
	case <-c.ctx.Done():
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, fmt.Errorf("relay: ping: %w", ctx.Err())
	}
}

// CheckTimeout is how long Check waits for the relay's pong before it
// takes the connection for dead.
const CheckTimeout = 2 * time.Second

// Check makes sure the connection still carries frames: it pings the
// relay in the background and, if no pong comes within CheckTimeout,
// redials. A connected client whose NAT forgot its mapping (a router
// reboot, a conntrack flush) otherwise writes into a dead TCP
// connection until its keepalive notices, minutes later. The node calls
// it when a direct path stopped answering and its traffic falls back to
// the relay. A Check while one runs does nothing; a client not
// connected is left to its reconnect loop.
func (c *Client) Check() {
	// Under c.mu, so that Close, which cancels c.ctx before it takes
	// c.mu, waits for any check added here.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || c.ctx.Err() != nil || !c.checking.CompareAndSwap(false, true) {
		return
	}
	c.checks.Add(1)
	go func() {
		defer c.checks.Done()
		defer c.checking.Store(false)
		ctx, cancel := context.WithTimeout(c.ctx, CheckTimeout)
		defer cancel()
		if _, err := c.Ping(ctx); err != nil && c.ctx.Err() == nil {
			c.log.Info("relay did not answer a ping; reconnecting", "err", err)
			c.Redial()
		}
	}()
}

// Close ends the connection and the run loop. Recv, Send and Ping return
// ErrClosed afterwards.
func (c *Client) Close() error {
	c.cancel() // after this, startLocked launches nothing
	c.mu.Lock()
	started, cc := c.started, c.cur
	c.mu.Unlock()
	if cc != nil {
		cc.nc.Close()
	}
	if started {
		<-c.done
	}
	c.checks.Wait()
	return nil
}

// Redial drops the current connection, if any, and makes the client
// connect again at once, its backoff back at MinBackoff; a dial in
// progress is abandoned and a wait between attempts cut short. The node
// calls it when one of its local addresses goes away: a TCP connection
// from that address is dead, but would only be noticed at the next
// keepalive deadline, minutes later. Address changes can come seconds
// apart (a renumbering, then another), and each must reconnect as fast
// as the first: the backoff is for a relay that fails, not for a network
// that changed.
func (c *Client) Redial() {
	select {
	case c.redial <- struct{}{}:
	default: // already asked
	}
	c.mu.Lock()
	cc, attempt := c.cur, c.attempt
	c.mu.Unlock()
	if attempt != nil {
		attempt()
	}
	if cc != nil {
		cc.nc.Close()
	}
}

// run is the client's one long-lived goroutine: connect, read until the
// connection fails, back off, repeat, until Close.
func (c *Client) run() {
	defer close(c.done)
	backoff := c.opts.MinBackoff
	urlIdx := 0
	for c.ctx.Err() == nil {
		u := c.urls[urlIdx%len(c.urls)]
		cc, err := c.attemptDial(u)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			if errors.Is(err, errRedialed) {
				// Redial abandoned the attempt: the next goes now, and
				// its request is used up.
				select {
				case <-c.redial:
				default:
				}
				backoff = c.opts.MinBackoff
				continue
			}
			c.log.Debug("relay connect failed", "url", u.String(), "err", err, "retry_in", backoff)
			c.mu.Lock()
			c.lastErr = err
			close(c.tried)
			c.tried = make(chan struct{})
			c.mu.Unlock()
			if c.opts.onDown != nil {
				c.opts.onDown()
			}
			urlIdx++
			if !c.backOff(&backoff) {
				return
			}
			continue
		}
		connectedAt := time.Now()
		c.install(cc)
		err = c.serve(cc)
		c.uninstall(cc)
		if c.ctx.Err() != nil {
			return
		}
		c.log.Debug("relay connection lost", "url", u.String(), "err", err)
		if c.opts.onDown != nil {
			c.opts.onDown()
		}
		if time.Since(connectedAt) > 10*time.Second {
			backoff = c.opts.MinBackoff // it was a working connection
		}
		if !c.backOff(&backoff) {
			return
		}
	}
}

// errRedialed is attemptDial's error when Redial cancelled the dial.
var errRedialed = errors.New("relay: dial abandoned for a redial")

// attemptDial dials u under a context Redial can cancel.
func (c *Client) attemptDial(u *url.URL) (*clientConn, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	c.mu.Lock()
	c.attempt = cancel
	c.mu.Unlock()
	cc, err := c.dial(ctx, u)
	c.mu.Lock()
	c.attempt = nil
	c.mu.Unlock()
	if err != nil && ctx.Err() != nil && c.ctx.Err() == nil {
		return nil, errRedialed
	}
	return cc, err
}

// backOff waits before the next attempt: a jittered *backoff, which then
// doubles up to MaxBackoff. A Redial, before or during the wait, ends it
// at once and puts *backoff back to MinBackoff. It returns false if the
// client was closed.
func (c *Client) backOff(backoff *time.Duration) bool {
	select {
	case <-c.redial:
		*backoff = c.opts.MinBackoff
		return c.ctx.Err() == nil
	default:
	}
	t := time.NewTimer(jitter(*backoff))
	defer t.Stop()
	select {
	case <-t.C:
		*backoff = min(2**backoff, c.opts.MaxBackoff)
		return true
	case <-c.redial:
		*backoff = c.opts.MinBackoff
		return true
	case <-c.ctx.Done():
		return false
	}
}

// jitter spreads d over [d/2, 3d/2) so that many clients cut off at once
// (a relay restart) do not all come back at the same instant.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d)))
	if err != nil {
		return d
	}
	return d/2 + time.Duration(n.Int64())
}

// install makes cc the live connection.
func (c *Client) install(cc *clientConn) {
	c.mu.Lock()
	c.cur = cc
	close(c.up)
	c.mu.Unlock()
	if c.opts.watchConns {
		c.deliver(connState{up: true})
		cc.write(FrameWatchConns)
	}
}

func (c *Client) uninstall(cc *clientConn) {
	cc.nc.Close()
	c.mu.Lock()
	c.cur = nil
	c.up = make(chan struct{})
	c.mu.Unlock()
	if c.opts.watchConns {
		c.deliver(connState{up: false})
	}
}

// deliver hands m to Recv, waiting while the reader is behind: the pause
// pushes back through TCP to the relay, whose queue for us is bounded.
func (c *Client) deliver(m Message) {
	select {
	case c.recv <- m:
	case <-c.ctx.Done():
	}
}

// serve reads frames from cc until it fails, and keeps it alive.
func (c *Client) serve(cc *clientConn) error {
	ka := time.Duration(cc.info.KeepAliveMillis) * time.Millisecond
	if ka <= 0 {
		ka = 60 * time.Second
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	defer cc.nc.Close() // first, so a writer stuck in a write returns
	// Close may run between the dial and here, after it looked for a
	// connection to close: closing on cancellation covers that gap.
	defer context.AfterFunc(c.ctx, func() { cc.nc.Close() })()
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.writePackets(cc, stop)
	}()
	go func() {
		defer wg.Done()
		keepAlive(cc, ka, stop)
	}()
	idle := 2*ka + 5*time.Second
	var lastDeadline time.Time
	for {
		if now := time.Now(); now.Sub(lastDeadline) > time.Second {
			cc.nc.SetReadDeadline(now.Add(idle))
			lastDeadline = now
		}
		t, b, err := readFrame(cc.br, MaxFramePayload)
		if err != nil {
			return err
		}
		if err := c.handleFrame(cc, t, b); err != nil {
			return err
		}
	}
}

// keepAlive writes a keepalive frame on cc every ka until stop is closed
// or a write fails.
func keepAlive(cc *clientConn, ka time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(ka)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if cc.write(FrameKeepAlive) != nil {
				return
			}
		}
	}
}

// handleFrame acts on one frame from the relay; an error ends the
// connection.
func (c *Client) handleFrame(cc *clientConn, t FrameType, b []byte) error {
	switch t {
	case FrameRecvPacket:
		src, data, err := splitKey(t, b)
		if err != nil {
			return err
		}
		c.deliver(ReceivedPacket{Src: src, Data: data})
	case FramePeerGone:
		k, r, err := parsePeerGone(b)
		if err != nil {
			return err
		}
		c.deliver(PeerGone{Key: k, Reason: r})
	case FramePeerPresent:
		k, _, err := splitKey(t, b)
		if err != nil {
			return err
		}
		if c.opts.watchConns {
			c.deliver(peerPresent{Key: k})
		}
	case FramePing:
		if len(b) == pingLen {
			cc.write(FramePong, b)
		}
	case FramePong:
		if len(b) == pingLen {
			c.mu.Lock()
			ch := c.pings[[pingLen]byte(b)]
			delete(c.pings, [pingLen]byte(b))
			c.mu.Unlock()
			if ch != nil {
				close(ch)
			}
		}
	case FrameRefused:
		return fmt.Errorf("%w: %s", ErrRefused, b)
	default:
		// keepalive, and frames of newer versions.
	}
	return nil
}

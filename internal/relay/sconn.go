package relay

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"weft/internal/key"
)

// This file is one server connection: its queues, its reader (the frames
// a client sends) and its writer (everything sent to the client).

// sconn is the server's side of one connection (a node or a mesh peer).
type sconn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer // used only by the writer goroutine
	remote string
	key    key.NodePublic
	mesh   bool // proved the mesh key; may watch and forward

	packets chan queuedPacket // bounded; full means drop (queue.go)
	ctrl    chan ctrlFrame    // pongs and peer-gone notices; full means drop
	done    chan struct{}     // closed when the reader ends

	preferred atomic.Bool

	// qmu guards the byte count of packets (queue.go).
	qmu     sync.Mutex
	qbytes  int  // bytes in packets
	qclosed bool // the connection is gone; nothing more is queued

	// pmu guards pending, the presence changes not yet written to a
	// watching mesh peer. Keeping the latest state per key (rather than a
	// queue) means presence is never dropped and never grows beyond the
	// number of clients.
	pmu     sync.Mutex
	pending map[key.NodePublic]bool
	psig    chan struct{} // capacity 1: "pending changed"

	// goneSent rate-limits peer-gone notices; reader goroutine only.
	goneSent map[key.NodePublic]time.Time
}

type queuedPacket struct {
	src  key.NodePublic
	data []byte
}

type ctrlFrame struct {
	t       FrameType
	payload []byte
}

// peerGoneInterval is the least time between two peer-gone notices for
// the same destination to one sender, who may be sending a stream.
const peerGoneInterval = time.Second

// peerGone tells c that dst cannot be reached here, at most once per
// peerGoneInterval per destination. Reader goroutine only.
func (c *sconn) peerGone(dst key.NodePublic, reason PeerGoneReason) {
	now := time.Now()
	if t, ok := c.goneSent[dst]; ok && now.Sub(t) < peerGoneInterval {
		return
	}
	if len(c.goneSent) > 1024 {
		// A sender spraying keys: forget old entries rather than grow.
		clear(c.goneSent)
	}
	c.goneSent[dst] = now
	k := dst.Raw32()
	select {
	case c.ctrl <- ctrlFrame{FramePeerGone, append(k[:], byte(reason))}:
	default:
	}
}

// readLoop reads frames from an authenticated connection until it fails.
func (c *sconn) readLoop() error {
	s := c.s
	var bucket *tokenBucket
	if s.opts.RateLimit > 0 && !c.mesh {
		bucket = newTokenBucket(s.opts.RateLimit, time.Now())
	}
	idle := 2*s.opts.KeepAlive + 5*time.Second
	var lastDeadline time.Time
	for {
		// Moving the deadline on every frame costs a timer update per
		// packet; once a second is precise enough for a minutes-long
		// timeout.
		if now := time.Now(); now.Sub(lastDeadline) > time.Second {
			c.nc.SetReadDeadline(now.Add(idle))
			lastDeadline = now
		}
		t, b, err := readFrame(c.br, MaxFramePayload)
		if err != nil {
			return err
		}
		if bucket != nil {
			if err := bucket.wait(s.ctx, len(b)+frameHeaderLen); err != nil {
				return err
			}
		}
		switch t {
		case FrameSendPacket:
			dst, data, err := splitKey(t, b)
			if err != nil {
				return err
			}
			s.forward(c, c.key, dst, data)
		case FrameForwardPacket:
			if !c.mesh {
				return fmt.Errorf("relay: %s sent forward-packet but is not a mesh peer", c.key.ShortString())
			}
			src, dst, data, err := parseForward(b)
			if err != nil {
				return err
			}
			s.forward(c, src, dst, data)
		case FrameWatchConns:
			if !c.mesh {
				return fmt.Errorf("relay: %s sent watch-conns but is not a mesh peer", c.key.ShortString())
			}
			s.addWatcher(c)
		case FrameNotePreferred:
			c.preferred.Store(len(b) > 0 && b[0] != 0)
		case FramePing:
			if len(b) != pingLen {
				return fmt.Errorf("%w: ping of %d bytes", ErrShortFrame, len(b))
			}
			select {
			case c.ctrl <- ctrlFrame{FramePong, b}:
			default:
			}
		case FrameKeepAlive, FramePong:
		default:
			// Unknown frames are skipped so that newer clients can add
			// optional ones.
		}
	}
}

// writeLoop is the only writer of c.bw. It batches what is queued into one
// flush, so a busy client costs one write syscall per batch, not per packet.
func (c *sconn) writeLoop() {
	s := c.s
	ka := time.NewTicker(s.opts.KeepAlive)
	defer ka.Stop()
	for {
		var err error
		select {
		case <-c.done:
			return
		case p := <-c.packets:
			c.dequeued(p)
			err = c.writePacket(p)
		case f := <-c.ctrl:
			err = writeFrame(c.bw, f.t, f.payload)
		case <-c.psig:
			err = c.writePresence()
		case <-ka.C:
			err = writeFrame(c.bw, FrameKeepAlive)
		}
		// Take whatever else is ready, up to a bound, before flushing.
		for i := 0; err == nil && i < 64; i++ {
			select {
			case p := <-c.packets:
				c.dequeued(p)
				err = c.writePacket(p)
				continue
			case f := <-c.ctrl:
				err = writeFrame(c.bw, f.t, f.payload)
				continue
			default:
			}
			break
		}
		if err == nil {
			c.nc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
			err = c.bw.Flush()
		}
		if err != nil {
			s.dropsWrite.Add(1)
			c.nc.Close() // the reader fails and cleans up
			<-c.done
			return
		}
	}
}

func (c *sconn) writePacket(p queuedPacket) error {
	if err := writeFrameHeader(c.bw, FrameRecvPacket, key.Len+len(p.data)); err != nil {
		return err
	}
	k := p.src.Raw32()
	if _, err := c.bw.Write(k[:]); err != nil {
		return err
	}
	_, err := c.bw.Write(p.data)
	return err
}

func (c *sconn) writePresence() error {
	c.pmu.Lock()
	pending := c.pending
	c.pending = nil
	c.pmu.Unlock()
	for k, present := range pending {
		raw := k.Raw32()
		var err error
		if present {
			err = writeFrame(c.bw, FramePeerPresent, raw[:])
		} else {
			err = writeFrame(c.bw, FramePeerGone, raw[:], []byte{byte(PeerGoneDisconnected)})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

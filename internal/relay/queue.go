package relay

// A client's send queue is bounded three ways: in packets (the channel's
// capacity, ServerOptions.QueueLen), in bytes per client (QueueBytes) and
// in bytes for the whole relay (MaxQueuedBytes). A packet over any bound
// is dropped and counted; WireGuard above retransmits what matters, and a
// relay that waited instead would let one stalled receiver stall its
// senders.

// Defaults for ServerOptions' byte bounds.
const (
	DefaultQueueBytes     = 1 << 20
	DefaultMaxQueuedBytes = 256 << 20
)

// queuedOverhead is what a queued packet costs beyond its payload: the
// channel slot and the slice header, rounded up.
const queuedOverhead = 64

func packetCost(p queuedPacket) int { return len(p.data) + queuedOverhead }

// enqueueResult says what became of a packet offered to a queue.
type enqueueResult int

const (
	queued    enqueueResult = iota
	queueFull               // the receiver's queue is full (packets or bytes)
	relayFull               // all queues together are at MaxQueuedBytes
	connGone                // the receiver's connection is closing
)

// enqueue offers p to c's queue within the bounds.
func (c *sconn) enqueue(p queuedPacket) enqueueResult {
	s := c.s
	cost := packetCost(p)
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.qclosed {
		return connGone
	}
	if c.qbytes+cost > s.opts.QueueBytes {
		return queueFull
	}
	if s.queued.Add(int64(cost)) > s.opts.MaxQueuedBytes {
		s.queued.Add(-int64(cost))
		return relayFull
	}
	select {
	case c.packets <- p:
		c.qbytes += cost
		return queued
	default:
		s.queued.Add(-int64(cost))
		return queueFull
	}
}

// dequeued accounts for p, taken from c.packets by the writer.
func (c *sconn) dequeued(p queuedPacket) {
	cost := packetCost(p)
	c.qmu.Lock()
	c.qbytes -= cost
	c.qmu.Unlock()
	c.s.queued.Add(-int64(cost))
}

// closeQueue refuses further packets and drops what is queued, returning
// how many packets that was.
func (c *sconn) closeQueue() int {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	c.qclosed = true
	n := 0
	for {
		select {
		case p := <-c.packets:
			cost := packetCost(p)
			c.qbytes -= cost
			c.s.queued.Add(-int64(cost))
			n++
		default:
			return n
		}
	}
}

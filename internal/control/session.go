package control

import (
	"sync"
	"time"

	"weft/internal/noiseconn"
	"weft/internal/wire"
)

// session is one node's live map stream: an outbound queue of ready-made
// frames and a writer goroutine that exists only while there is something
// to write, so an idle stream costs no goroutine beyond its reader.
type session struct {
	srv     *Server
	id      wire.NodeID
	conn    *noiseconn.Conn
	fullSeq uint64 // seq of the full map; set by mapper.connected under its lock

	mu         sync.Mutex // guards the fields below
	queue      [][]byte
	queued     int  // bytes in queue
	writing    bool // a writer goroutine is running
	closed     bool // no more frames are accepted
	closeAfter bool // close the connection once the queue is written
	sent       bool // something was queued since the last keepalive tick
}

func newSession(s *Server, id wire.NodeID, conn *noiseconn.Conn) *session {
	return &session{srv: s, id: id, conn: conn}
}

func (ss *session) lock()   { ss.mu.Lock() }
func (ss *session) unlock() { ss.mu.Unlock() }

// enqueue adds a frame for the node; nil stands for a full map. Frames
// may be shared between sessions and are never modified. A node whose queue outgrows the limit
// is too slow to follow; it is dropped and will resync with a full map.
func (ss *session) enqueue(frame []byte) {
	ss.lock()
	defer ss.unlock()
	if ss.closed {
		return
	}
	ss.sent = true
	if ss.queued+len(frame) > ss.srv.cfg.MaxQueue {
		ss.closed = true
		ss.queue = nil
		ss.srv.log.Info("node too slow to follow its map stream; dropping it", "node", ss.id)
		ss.srv.spawn(func() { ss.conn.Close() })
		return
	}
	ss.queue = append(ss.queue, frame)
	ss.queued += len(frame)
	ss.startWriterLocked()
}

// fail sends em to the node and then closes its channel.
func (ss *session) fail(em *wire.ErrorMessage) {
	frame := wire.AppendMessage(nil, wire.MsgError, mustJSON(em))
	ss.lock()
	defer ss.unlock()
	if ss.closed {
		return
	}
	ss.queue = append(ss.queue, frame)
	ss.closed, ss.closeAfter = true, true
	ss.startWriterLocked()
}

// close closes the channel without a word, as when a newer stream of the
// same node replaces this one.
func (ss *session) close() {
	ss.lock()
	ss.closed = true
	ss.queue = nil
	ss.unlock()
	ss.conn.Close()
}

// startWriterLocked starts the writer goroutine if none runs. ss.mu is held.
func (ss *session) startWriterLocked() {
	if ss.writing {
		return
	}
	ss.writing = true
	ss.srv.spawn(ss.writeLoop)
}

func (ss *session) writeLoop() {
	for {
		ss.lock()
		q := ss.queue
		ss.queue, ss.queued = nil, 0
		if len(q) == 0 {
			ss.writing = false
			closeNow := ss.closeAfter
			ss.unlock()
			if closeNow {
				ss.conn.Close()
			}
			return
		}
		ss.unlock()
		ss.conn.SetWriteDeadline(time.Now().Add(ss.srv.cfg.WriteTimeout))
		if err := ss.write(q); err != nil {
			ss.lock()
			ss.closed, ss.writing, ss.queue = true, false, nil
			ss.unlock()
			ss.conn.Close()
			return
		}
	}
}

// write writes queued frames in order; a nil entry stands for the node's
// full map, which is built only now (see mapper.writeFullMap).
func (ss *session) write(q [][]byte) error {
	for len(q) > 0 {
		if q[0] == nil {
			if err := ss.srv.m.writeFullMap(ss); err != nil {
				return err
			}
			q = q[1:]
			continue
		}
		i := 1
		for i < len(q) && q[i] != nil {
			i++
		}
		for _, frame := range coalesce(q[:i]) {
			if _, err := ss.conn.Write(frame); err != nil {
				return err
			}
		}
		q = q[i:]
	}
	return nil
}

// coalesceLimit bounds the frames joined into one write.
const coalesceLimit = 64 << 10

// coalesce joins runs of small frames, so that a node that fell behind
// catches up with one encryption and one system call per 64 KiB instead of
// one per delta. Under load queues grow, so the server's cost per change
// goes down just when it matters.
func coalesce(q [][]byte) [][]byte {
	if len(q) < 2 {
		return q
	}
	out := q[:0:0]
	var cur []byte
	for _, f := range q {
		if len(f) >= coalesceLimit {
			if cur != nil {
				out = append(out, cur)
				cur = nil
			}
			out = append(out, f)
			continue
		}
		if len(cur)+len(f) > coalesceLimit {
			out = append(out, cur)
			cur = nil
		}
		if cur == nil {
			cur = make([]byte, 0, coalesceLimit)
		}
		cur = append(cur, f...)
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

package speedtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Result is one direction of a test.
type Result struct {
	Dir   Direction
	Bytes int64
	// Elapsed is how long the bytes took: for Up as the server measured
	// it (from the request to the last byte received), for Down as the
	// client did.
	Elapsed time.Duration
	// Retransmits counts the TCP segments the sender sent again, where
	// the sender is this side (Up) and the OS says; -1 when unknown.
	Retransmits int64
}

// Mbps is the throughput in Mbit/s.
func (r Result) Mbps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e6
}

// Dial opens a TCP connection; *net.Dialer's DialContext is one.
type Dial func(ctx context.Context, network, addr string) (net.Conn, error)

// Run runs one direction of a test against the server at addr.
func Run(ctx context.Context, dial Dial, addr string, req Request) (Result, error) {
	res := Result{Dir: req.Dir, Retransmits: -1}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return res, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(req.Duration + 20*time.Second))
	if _, err := io.WriteString(c, req.encode()); err != nil {
		return res, err
	}
	br := bufio.NewReader(c)
	switch req.Dir {
	case Up:
		answered := sendUp(c, br, req.Duration)
		tc, _ := c.(*net.TCPConn)
		if tc != nil {
			tc.CloseWrite()
		}
		<-answered // br is the reader's again
		line, err := readLine(br)
		if tc != nil {
			res.Retransmits = retransmits(tc)
		}
		if err != nil {
			return res, fmt.Errorf("no answer from the server after sending: %w", err)
		}
		n, us, err := parseUpAnswer(line)
		if err != nil {
			return res, err
		}
		res.Bytes, res.Elapsed = n, time.Duration(us)*time.Microsecond
	case Down:
		line, err := readLine(br)
		if err != nil {
			return res, fmt.Errorf("no answer from the server: %w", err)
		}
		if line != "ok" {
			return res, answerError(line)
		}
		start := time.Now()
		n, err := io.Copy(io.Discard, io.LimitReader(br, MaxBytes))
		res.Bytes, res.Elapsed = n, time.Since(start)
		if err != nil && ctx.Err() != nil {
			return res, ctx.Err()
		}
	default:
		return res, fmt.Errorf("unknown direction %q", req.Dir)
	}
	return res, nil
}

// sendUp sends for d, stopping early if the server answers first (a
// refusal). It returns a channel closed once the server's answer (or the
// end of the connection) is there; br must not be read before.
func sendUp(c net.Conn, br *bufio.Reader, d time.Duration) <-chan struct{} {
	refused := make(chan struct{})
	go func() {
		// Peek returns once a byte is there or the connection is
		// closed.
		br.Peek(1)
		close(refused)
	}()
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(d)
	var n int64
	for n < MaxBytes && time.Now().Before(deadline) {
		select {
		case <-refused:
			return refused
		default:
		}
		m, err := c.Write(buf)
		n += int64(m)
		if err != nil {
			break
		}
	}
	return refused
}

// parseUpAnswer reads "ok BYTES MICROS" or a refusal.
func parseUpAnswer(line string) (n, us int64, err error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ok" {
		return 0, 0, answerError(line)
	}
	n, err1 := strconv.ParseInt(f[1], 10, 64)
	us, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || n < 0 || us <= 0 {
		return 0, 0, fmt.Errorf("bad answer from the server: %q", line)
	}
	return n, us, nil
}

// answerError is the error a refusal line says.
func answerError(line string) error {
	if msg, ok := strings.CutPrefix(line, "err "); ok {
		return fmt.Errorf("the peer refused the test: %s", msg)
	}
	return errors.New("bad answer from the server: " + strconv.Quote(line))
}

// Package speedtest measures throughput through the tunnel between two
// weft nodes with nothing installed on the other side: each node's daemon
// serves the test on its own tailnet address (Server), and `weft speedtest`
// runs the other end (Run). docs/speedtest.md describes the protocol.
//
// One test is one TCP connection. The client sends one request line,
// "weft-speedtest 1 DIR MILLIS\n", DIR being "up" (client to server) or
// "down" (server to client). For "up" the client sends for MILLIS and
// closes its side; the server answers "ok BYTES MICROS\n": what it
// received and over how long. For "down" the server answers "ok\n", sends
// for MILLIS and closes. A refusal is one line "err TEXT\n".
package speedtest

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is the TCP port the daemon serves the test on, on its
// tailnet address only.
const DefaultPort = 41643

// Bounds on one test, enforced by the server whatever the client asks.
const (
	// MaxDuration bounds one direction of a test.
	MaxDuration = 30 * time.Second
	// MaxBytes bounds what one test sends or receives: 30 s at a little
	// over 1 Gbit/s.
	MaxBytes = 4 << 30
)

// magic opens every request; the number after it is the protocol version.
const magic = "weft-speedtest"

// maxLine bounds a request or answer line.
const maxLine = 128

// Direction is which way the data flows, seen from the client.
type Direction string

// Directions.
const (
	Up   Direction = "up"   // client to server
	Down Direction = "down" // server to client
)

// Request is what the client asks for.
type Request struct {
	Dir      Direction
	Duration time.Duration
}

func (r Request) encode() string {
	return fmt.Sprintf("%s 1 %s %d\n", magic, r.Dir, r.Duration.Milliseconds())
}

// ParseRequest reads a request line (without its newline).
func ParseRequest(line string) (Request, error) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != magic {
		return Request{}, errors.New("not a weft speed test request")
	}
	if f[1] != "1" {
		return Request{}, fmt.Errorf("speed test protocol version %s not supported (this node speaks 1): upgrade weft", f[1])
	}
	dir := Direction(f[2])
	if dir != Up && dir != Down {
		return Request{}, fmt.Errorf("unknown direction %q", f[2])
	}
	ms, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || ms <= 0 {
		return Request{}, fmt.Errorf("bad duration %q", f[3])
	}
	d := time.Duration(ms) * time.Millisecond
	if ms > int64(MaxDuration/time.Millisecond) {
		d = MaxDuration
	}
	return Request{Dir: dir, Duration: d}, nil
}

// readLine reads one line of at most maxLine bytes, without its newline.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return string(b), nil
		}
		if len(b) >= maxLine {
			return "", errors.New("line too long")
		}
		b = append(b, c)
	}
}

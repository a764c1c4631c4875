package samples

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"weft/internal/nodestate"
	"weft/internal/wire"
)

// Defaults for Options' zero fields.
const (
	// DefaultRetention is how long samples are kept: the seed's owner
	// looked back over a week and more, so a month.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultMaxSamples bounds the samples kept whatever their age, so a
	// short interval (tests sample every second) cannot grow the file
	// without end. A month of 5-minute samples is 8,640.
	DefaultMaxSamples = 20000
)

// maxRecord bounds one record's line; a longer line is damaged.
const maxRecord = 1 << 20

// castagnoli is the CRC-32C table that checks each record.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Store.
type Options struct {
	// Retention drops samples older than this; zero means
	// DefaultRetention.
	Retention time.Duration
	// MaxSamples keeps at most this many of the newest samples; zero
	// means DefaultMaxSamples.
	MaxSamples int
	// Now is the clock for Retention; nil means time.Now.
	Now func() time.Time
}

// Store is a bounded, persistent list of samples: a file of records, one
// a line, each line the CRC-32C (Castagnoli) of its JSON in 8 hex digits,
// a space and the JSON. New samples are appended, so a crash can cut short
// only the last line, which the next Open skips (as it skips any line whose
// checksum is wrong); the file is rewritten atomically, with only the kept
// samples, once it holds twice as many records as are kept. It is safe for
// concurrent use.
type Store struct {
	path string
	opts Options
	// openAppend opens the file for appending; tests replace it to
	// simulate a full disk.
	openAppend func(path string) (io.WriteCloser, error)

	mu      sync.Mutex
	samples []wire.HealthSample // guarded by mu; oldest first
	lines   int                 // guarded by mu; records in the file
	damaged int                 // records skipped by Open
	// rewrite is set when the file does not end in a whole record (a
	// crash or a full disk cut one short): the next Append rewrites the
	// file rather than add to the broken line. Guarded by mu.
	rewrite bool
}

// Open reads the store at path; a missing file is an empty store. Damaged
// records are skipped and counted (Damaged), never an error: losing one
// sample to a power cut is fine, refusing to start is not.
func Open(path string, opts Options) (*Store, error) {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = DefaultMaxSamples
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{path: path, opts: opts, openAppend: openAppend}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	s.samples, s.lines, s.damaged = decode(b)
	s.rewrite = s.damaged > 0 || (len(b) > 0 && b[len(b)-1] != '\n')
	s.pruneLocked()
	return s, nil
}

func openAppend(path string) (io.WriteCloser, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// decode reads every record of b, returning the good samples (in file
// order), the number of lines and the number of damaged ones.
func decode(b []byte) (ss []wire.HealthSample, lines, damaged int) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxRecord)
	for sc.Scan() {
		lines++
		smp, ok := decodeRecord(sc.Bytes())
		if !ok {
			damaged++
			continue
		}
		ss = append(ss, smp)
	}
	if sc.Err() != nil {
		// A line longer than maxRecord: keep what was read before it.
		damaged++
	}
	return ss, lines, damaged
}

// encodeRecord is one record's line, newline included.
func encodeRecord(smp wire.HealthSample) ([]byte, error) {
	js, err := json.Marshal(smp)
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	line := make([]byte, 0, len(js)+10)
	line = fmt.Appendf(line, "%08x ", crc32.Checksum(js, castagnoli))
	line = append(line, js...)
	return append(line, '\n'), nil
}

// decodeRecord parses one line without its newline.
func decodeRecord(line []byte) (wire.HealthSample, bool) {
	var smp wire.HealthSample
	if len(line) < 10 || line[8] != ' ' {
		return smp, false
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return smp, false
	}
	js := line[9:]
	want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if crc32.Checksum(js, castagnoli) != want {
		return smp, false
	}
	if err := json.Unmarshal(js, &smp); err != nil || smp.Time.IsZero() {
		return smp, false
	}
	return smp, true
}

// Damaged is how many records Open could not read.
func (s *Store) Damaged() int { return s.damaged }

// Since returns the kept samples taken at or after t, oldest first; a
// zero t returns all.
func (s *Store) Since(t time.Time) []wire.HealthSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.HealthSample
	for _, smp := range s.samples {
		if t.IsZero() || !smp.Time.Before(t) {
			out = append(out, smp)
		}
	}
	return out
}

// Append records smp in memory and in the file. When the file cannot be
// written (a full disk), the sample is still kept in memory, the error
// says what to do, and the next Append tries the file again.
func (s *Store) Append(smp wire.HealthSample) error {
	line, err := encodeRecord(smp)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, smp)
	s.pruneLocked()
	if s.rewrite || s.lines+1 > 2*len(s.samples)+16 {
		return s.rewriteLocked()
	}
	f, err := s.openAppend(s.path)
	if err != nil {
		return s.writeError(err)
	}
	_, err = f.Write(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Part of the line may be in the file: rewrite it whole next
		// time.
		s.rewrite = true
		return s.writeError(err)
	}
	s.lines++
	return nil
}

// pruneLocked drops samples older than the retention and beyond the
// count bound.
func (s *Store) pruneLocked() {
	cut := s.opts.Now().Add(-s.opts.Retention)
	i := 0
	for i < len(s.samples) && s.samples[i].Time.Before(cut) {
		i++
	}
	if n := len(s.samples) - i; n > s.opts.MaxSamples {
		i += n - s.opts.MaxSamples
	}
	if i > 0 {
		s.samples = append([]wire.HealthSample(nil), s.samples[i:]...)
	}
}

// rewriteLocked replaces the file with the kept samples, atomically.
func (s *Store) rewriteLocked() error {
	var buf bytes.Buffer
	for _, smp := range s.samples {
		line, err := encodeRecord(smp)
		if err != nil {
			return err
		}
		buf.Write(line)
	}
	if err := nodestate.WriteFileAtomic(s.path, buf.Bytes()); err != nil {
		s.rewrite = true
		return s.writeError(err)
	}
	s.lines = len(s.samples)
	s.rewrite = false
	return nil
}

// writeError says what a failed write means for the user.
func (s *Store) writeError(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("samples: the disk holding %s is full (%w): free some space; samples are kept in memory until then", s.path, err)
	}
	return fmt.Errorf("samples: writing %s: %w", s.path, err)
}

// Latest returns the newest kept sample, or nil when there is none.
func (s *Store) Latest() *wire.HealthSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return nil
	}
	smp := s.samples[len(s.samples)-1]
	return &smp
}

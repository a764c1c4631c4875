package samples

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"weft/internal/wire"
)

var t0 = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)

func sample(i int) wire.HealthSample {
	return wire.HealthSample{
		Time:    t0.Add(time.Duration(i) * time.Minute),
		Metrics: map[string]float64{"peer_rtt_ms:busan": float64(i)},
		Facts:   map[string]string{"public_addr": "203.0.113.21"},
	}
}

func rtts(ss []wire.HealthSample) string {
	var out []string
	for _, s := range ss {
		out = append(out, fmt.Sprint(s.Metrics["peer_rtt_ms:busan"]))
	}
	return strings.Join(out, ",")
}

func clock(now time.Time) func() time.Time { return func() time.Time { return now } }

func TestStoreKeepsAcrossReopenAndBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "samples.log")
	opts := Options{MaxSamples: 5, Now: clock(t0.Add(time.Hour))}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := s.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := rtts(s.Since(time.Time{})); got != "35,36,37,38,39" {
		t.Fatalf("kept %s", got)
	}
	if got := rtts(s.Since(t0.Add(38 * time.Minute))); got != "38,39" {
		t.Fatalf("since: %s", got)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n > 2*5+16 {
		t.Errorf("the file has %d records, want at most %d", n, 2*5+16)
	}
	s2, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := rtts(s2.Since(time.Time{})); got != "35,36,37,38,39" || s2.Damaged() != 0 {
		t.Fatalf("after reopening: %s, %d damaged", got, s2.Damaged())
	}
	// Retention: an hour later than the newest, with a 30-minute
	// retention, nothing is kept.
	s3, err := Open(path, Options{Retention: 30 * time.Minute, Now: clock(t0.Add(100 * time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	if got := rtts(s3.Since(time.Time{})); got != "" {
		t.Errorf("samples older than the retention kept: %s", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestStoreSkipsDamagedRecords(t *testing.T) {
	var lines []string
	for i := range 4 {
		b, err := encodeRecord(sample(i))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	corrupt := strings.Replace(lines[1], `"peer_rtt_ms:busan":1`, `"peer_rtt_ms:busan":7`, 1) // checksum no longer matches
	truncated := lines[3][:len(lines[3])/2]                                                   // cut short by a power cut
	tests := []struct {
		name, content, want string
		damaged             int
	}{
		{"truncated last record", lines[0] + lines[1] + lines[2] + truncated, "0,1,2", 1},
		{"corrupt middle record", lines[0] + corrupt + lines[2] + lines[3], "0,2,3", 1},
		{"garbage", "not a record\n\x00\x01\n" + lines[0] + "0000000 {}\n" + "00000000 {}\n", "0", 4},
		{"empty", "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "samples.log")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{Now: clock(t0)})
			if err != nil {
				t.Fatal(err)
			}
			if got := rtts(s.Since(time.Time{})); got != tt.want || s.Damaged() != tt.damaged {
				t.Fatalf("read %q with %d damaged, want %q with %d", got, s.Damaged(), tt.want, tt.damaged)
			}
			// The next sample does not join a broken line.
			if err := s.Append(sample(9)); err != nil {
				t.Fatal(err)
			}
			s2, err := Open(path, Options{Now: clock(t0)})
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimPrefix(tt.want+",9", ",")
			if got := rtts(s2.Since(time.Time{})); got != want || s2.Damaged() != 0 {
				t.Fatalf("after appending: %q with %d damaged, want %q clean", got, s2.Damaged(), want)
			}
		})
	}
}

// fullDisk writes half of what it is given, then fails as a full disk does.
type fullDisk struct{}

func (fullDisk) Write(b []byte) (int, error) {
	return len(b) / 2, &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}
}
func (fullDisk) Close() error { return nil }

func TestStoreDiskFull(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "samples.log")
	s, err := Open(path, Options{Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(sample(0)); err != nil {
		t.Fatal(err)
	}
	real := s.openAppend
	s.openAppend = func(string) (io.WriteCloser, error) { return fullDisk{}, nil }
	err = s.Append(sample(1))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "is full") || !strings.Contains(err.Error(), "free some space") {
		t.Fatalf("a full disk gave %v; want a clear error", err)
	}
	if got := rtts(s.Since(time.Time{})); got != "0,1" {
		t.Errorf("in memory after the failed write: %s", got)
	}
	// Space comes back: the half-written record is replaced by the
	// whole file.
	s.openAppend = real
	if err := s.Append(sample(2)); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if got := rtts(s2.Since(time.Time{})); got != "0,1,2" || s2.Damaged() != 0 {
		t.Fatalf("after the disk had room again: %q, %d damaged", got, s2.Damaged())
	}
}

// FuzzDecode reads arbitrary files: decode never panics, keeps only
// records whose checksum holds, and a store opened on the content appends
// and reopens cleanly.
func FuzzDecode(f *testing.F) {
	b, _ := encodeRecord(sample(1))
	f.Add(b)
	f.Add(append(b, b[:20]...))
	f.Add([]byte("00000000 {}\n\xff"))
	f.Fuzz(func(t *testing.T, content []byte) {
		ss, lines, damaged := decode(content)
		if len(ss)+damaged < lines || len(ss) > lines {
			t.Fatalf("%d samples, %d lines, %d damaged", len(ss), lines, damaged)
		}
		path := filepath.Join(t.TempDir(), "samples.log")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, Options{Now: clock(t0)})
		if err != nil {
			t.Fatal(err)
		}
		n := len(s.Since(time.Time{}))
		if err := s.Append(sample(2)); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(path, Options{Now: clock(t0)})
		if err != nil {
			t.Fatal(err)
		}
		if s2.Damaged() != 0 || len(s2.Since(time.Time{})) < 1 || len(s2.Since(time.Time{})) > n+1 {
			t.Fatalf("after append: %d samples, %d damaged", len(s2.Since(time.Time{})), s2.Damaged())
		}
	})
}

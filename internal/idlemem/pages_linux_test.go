package idlemem

import (
	"bytes"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident reports, for each whole page inside b, whether it is in memory.
func resident(t *testing.T, b []byte) []bool {
	t.Helper()
	a := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (a + pageSize - 1) &^ (pageSize - 1)
	end := (a + uintptr(len(b))) &^ (pageSize - 1)
	if end <= start {
		return nil
	}
	vec := make([]byte, (end-start)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, start, end-start, uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

func TestReleasePagesGivesBackWholePagesOnly(t *testing.T) {
	const size = 64 << 10
	tests := []struct {
		name string
		from int // where the buffer starts in its backing array
		len  int // its length; its capacity ends where it ends
	}{
		{"a whole 64 KiB buffer", 0, size},
		{"a buffer that starts and ends inside pages", 100, size - 300},
		{"a buffer smaller than a page", 10, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backing := make([]byte, size)
			for i := range backing {
				backing[i] = 0xAA
			}
			buf := backing[tt.from : tt.from+tt.len : tt.from+tt.len]
			for _, r := range resident(t, buf) {
				if !r {
					t.Fatal("a page written to is not resident before the release")
				}
			}
			n := releasePages([][]byte{buf})
			pages := resident(t, buf)
			if want := min(1, len(pages)); n != want {
				t.Errorf("releasePages = %d, want %d", n, want)
			}
			for i, r := range pages {
				if r {
					t.Errorf("page %d of %d is still resident", i, len(pages))
				}
			}
			// Outside the whole pages, and outside the buffer, the
			// bytes are as they were; inside they read as zeros.
			a := uintptr(unsafe.Pointer(unsafe.SliceData(backing)))
			for i, v := range backing {
				p := a + uintptr(i)
				inside := i >= tt.from && i < tt.from+tt.len &&
					p >= (a+uintptr(tt.from)+pageSize-1)&^(pageSize-1) &&
					p < (a+uintptr(tt.from+tt.len))&^(pageSize-1)
				if inside && v != 0 {
					t.Fatalf("byte %d inside a released page reads %#x, want 0", i, v)
				}
				if !inside && v != 0xAA {
					t.Fatalf("byte %d outside the released pages was changed to %#x", i, v)
				}
			}
			// The buffer works as before.
			copy(buf, bytes.Repeat([]byte{1}, len(buf)))
			if !bytes.Equal(buf, bytes.Repeat([]byte{1}, len(buf))) {
				t.Error("the buffer does not hold what was written after the release")
			}
		})
	}
}

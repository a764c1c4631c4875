package idlemem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// pageSize is the system's page size.
var pageSize = uintptr(unix.Getpagesize())

// releasePages tells the kernel that the whole pages inside each of bufs
// (up to its capacity) are not needed: they stop counting as resident
// and read as zeros until written again. The Go heap does not notice: the
// buffers stay allocated, and a packet buffer's old contents are never
// read before a packet is written into it. It returns how many buffers
// gave pages back.
func releasePages(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		b = b[:cap(b)]
		if len(b) == 0 {
			continue
		}
		a := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		start := (a + pageSize - 1) &^ (pageSize - 1)
		end := (a + uintptr(len(b))) &^ (pageSize - 1)
		if end <= start {
			continue
		}
		if unix.Madvise(b[start-a:end-a], unix.MADV_DONTNEED) == nil {
			n++
		}
	}
	return n
}

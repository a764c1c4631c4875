package agent

import (
	"fmt"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"weft/internal/inflight"
)

// The data plane's memory, for the daemon's Go memory limit
// (docs/benchmarks.md, "Memory under load"). wireguard-go keeps each
// packet in a buffer of device.MaxMessageSize (the allocator rounds it to
// 64 KiB), and its readers each hold one batch of them at all times: the
// TUN reader, the socket's IPv4 and IPv6 readers and magicsock's reader
// of relayed packets. What the device holds on top of that is the
// in-flight bound, in each direction.
const (
	bufferBytes   = (device.MaxMessageSize + 1023) / 1024 * 1024
	readerBuffers = 4 * conn.IdealBatchSize
	// baseMemory is what the limit leaves the daemon besides the packet
	// buffers. The rest of its heap is about 10 MB; a little less here
	// makes the collector run a few times a second under load rather
	// than let pooled buffers pile up to the limit, which a lab burst
	// showed as 52 MB of RSS at the peak instead of 60 (docs/benchmarks.md).
	baseMemory = 8 << 20
	// gcRoom is what the limit leaves above the buffers the device may
	// hold, so that under load the collector finds garbage to free and
	// runs a few times a second. Without it (the default limit of 56
	// MiB with 128 packets in flight) the live heap reached the limit's
	// heap goal (46 MB of 46) and the collector ran back to back, 6-16
	// times a second, for 10-16 % of the daemons' CPU
	// (docs/benchmarks.md, "Data plane side by side").
	gcRoom = 8 << 20
	// MinInFlight is the smallest in-flight bound a memory limit can
	// buy: below it the device's readers wait for almost every batch.
	MinInFlight = 16
)

// DefaultMemoryLimit is the daemon's Go memory limit with the default
// in-flight bound (inflight.DefaultMax, 64): 56 MiB.
var DefaultMemoryLimit = MemoryLimit(inflight.DefaultMax)

// MemoryLimit is the Go memory limit that keeps the daemon's heap near
// its working set with an in-flight bound of inFlight packets per
// direction: the base, room for the collector, the readers' batches and
// both directions' bound.
// Above the working set the collector would let the heap double before
// it runs (GOGC=100), and buffers freed into wireguard-go's pools would
// sit there.
func MemoryLimit(inFlight int) int64 {
	return baseMemory + gcRoom + int64(readerBuffers+2*inFlight)*bufferBytes
}

// MinMemoryLimit is the smallest memory limit the daemon accepts: its
// base and the device's readers' batches, which it holds even when idle
// (most of those pages are never touched, so its resident memory is less).
const MinMemoryLimit = 32 << 20

// InFlightFor returns the in-flight bound per direction for a Go memory
// limit of limit bytes: inflight.DefaultMax from DefaultMemoryLimit up,
// falling in a straight line to MinInFlight toward MinMemoryLimit. Below
// the default it is the collector, run more often, that keeps the heap
// down; the bound shrinks with the limit so that the buffers stay bounded
// at that size too, but not as fast as the arithmetic of MemoryLimit
// would have it: with 16 packets in flight the device's readers wait for
// almost every batch, and a lab run at 48 MiB peaked at the same RSS with
// 16 and with 128 (docs/benchmarks.md, "Memory under load"). It fails for
// a limit below MinMemoryLimit.
func InFlightFor(limit int64) (int, error) {
	if limit < MinMemoryLimit {
		return 0, fmt.Errorf("agent: a memory limit of %d MiB is below the %d MiB the daemon needs at rest; give it at least %d MiB (%d MiB keep %d packets in flight each way)",
			limit>>20, MinMemoryLimit>>20, MinMemoryLimit>>20, DefaultMemoryLimit>>20, inflight.DefaultMax)
	}
	n := int64(inflight.DefaultMax) * (limit - MinMemoryLimit) / (DefaultMemoryLimit - MinMemoryLimit)
	return int(min(max(n, MinInFlight), inflight.DefaultMax)), nil
}

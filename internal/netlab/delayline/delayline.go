//go:build linux

// Package delayline is the lab's link delay: a userspace forwarder between
// two network interfaces that holds every frame for a fixed time before
// passing it on. Kernels without the netem qdisc have no other way to
// delay a link.
//
// Each side is an AF_PACKET socket bound to one interface. The sockets use
// virtio-net headers (PACKET_VNET_HDR), so large segmentation-offloaded
// frames and frames with a checksum still to be filled in cross the line
// intact, exactly as the kernel handed them over.
package delayline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxFrame is the largest read: a virtio-net header plus a 64 KiB
// offloaded frame and its Ethernet header.
const maxFrame = 10 + 65536 + 14 + 4

// DefaultQueue is the number of frames held per direction when Config.Queue
// is zero. Beyond it frames are dropped, as a router's full queue would.
const DefaultQueue = 8192

// Open returns an AF_PACKET socket bound to the interface called ifname in
// the calling thread's network namespace, ready for Run. Frames the
// interface sends itself are not read back.
func Open(ifname string) (*os.File, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("delayline: interface %s: %w", ifname, err)
	}
	proto := htons(unix.ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(proto))
	if err != nil {
		return nil, fmt.Errorf("delayline: packet socket: %w", err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("delayline: %s on %s: %w", what, ifname, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("PACKET_VNET_HDR", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
		return fail("SO_RCVBUF", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	return os.NewFile(uintptr(fd), "packet:"+ifname), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Config is one delay line.
type Config struct {
	// A and B are packet sockets from Open (or inherited from a parent
	// that opened them). Run owns them and closes them when it returns.
	A, B *os.File
	// Delay is how long each frame is held, in each direction.
	Delay time.Duration
	// Queue bounds the frames held per direction; zero means
	// DefaultQueue.
	Queue int
	// ExtraIPv4 and ExtraIPv6 hold IPv4 or IPv6 frames that much longer
	// than Delay, so that a path's latency differs by address family
	// (one family tunnelled, or routed the long way). Zero: no extra.
	ExtraIPv4, ExtraIPv6 time.Duration
	// LossPercent drops that share of the frames, chosen at random and
	// independently, in each direction (ARP excepted); zero drops none. It is the lab's
	// lossy link (the kernel's netem qdisc may be missing).
	LossPercent int
	// Logger receives start and stop lines, and every StatsEvery the
	// counters of each direction while they change; nil discards them.
	Logger *slog.Logger
	// StatsEvery is how often the counters are logged; zero means
	// DefaultStatsEvery.
	StatsEvery time.Duration
}

// DefaultStatsEvery is how often Run logs its counters when
// Config.StatsEvery is zero.
const DefaultStatsEvery = 5 * time.Second

// Stats counts one direction's frames. Lost frames are the ones
// Config.LossPercent chose; every other drop (a full queue, a frame the
// far side would not take, a frame the kernel dropped before the line
// read it) is not meant to happen, and shows that the line itself could
// not keep up (an overloaded machine), so a lossy link then loses more
// than its LossPercent.
type Stats struct {
	Frames       uint64 // read from the near side
	Lost         uint64 // dropped by LossPercent
	QueueFull    uint64 // dropped because Queue frames were waiting
	WriteDropped uint64 // the far side refused them
	KernelDrops  uint64 // dropped by the kernel before the line read them (packet sockets only)
}

// counters are a direction's Stats as they run.
type counters struct {
	frames, lost, queueFull, writeDropped, kernelDrops atomic.Uint64
}

func (c *counters) stats() Stats {
	return Stats{Frames: c.frames.Load(), Lost: c.lost.Load(), QueueFull: c.queueFull.Load(),
		WriteDropped: c.writeDropped.Load(), KernelDrops: c.kernelDrops.Load()}
}

type frame struct {
	due time.Time
	b   []byte
}

// Run forwards frames A→B and B→A, each held for cfg.Delay, until ctx is
// done or a socket fails. Frames leave in the order they arrived.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := cfg.Logger
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2+2*numClasses)
	var wg sync.WaitGroup
	type direction struct {
		name     string
		from, to *os.File
		c        counters
	}
	dirs := []*direction{{name: "a->b", from: cfg.A, to: cfg.B}, {name: "b->a", from: cfg.B, to: cfg.A}}
	delays := [numClasses]time.Duration{cfg.Delay, cfg.Delay + cfg.ExtraIPv4, cfg.Delay + cfg.ExtraIPv6}
	for _, d := range dirs {
		// A queue per class of frame: frames of one class share a
		// delay, so each queue stays in due order.
		var qs [numClasses]chan frame
		for i := range qs {
			qs[i] = make(chan frame, cfg.Queue)
			wg.Add(1)
			go func() { defer wg.Done(); errc <- write(ctx, d.to, qs[i], &d.c) }()
		}
		wg.Add(1)
		lose := newLoss(cfg.LossPercent)
		go func() { defer wg.Done(); errc <- read(ctx, d.from, qs, delays, lose, &d.c) }()
	}
	log.Info("delay line running", "delay", cfg.Delay, "extra_ipv4", cfg.ExtraIPv4, "extra_ipv6", cfg.ExtraIPv6, "loss_percent", cfg.LossPercent)
	logStats := func(final bool) {
		for _, d := range dirs {
			d.c.kernelDrops.Add(kernelDrops(d.from))
			st := d.c.stats()
			log.Info("delay line stats", "dir", d.name, "final", final, "frames", st.Frames, "lost", st.Lost,
				"queue_full", st.QueueFull, "write_dropped", st.WriteDropped, "kernel_drops", st.KernelDrops)
		}
	}
	tick := time.NewTicker(cfg.StatsEvery)
	defer tick.Stop()
	var err error
	var last [2]Stats
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err = <-errc:
			break wait
		case <-tick.C:
			now := [2]Stats{dirs[0].c.stats(), dirs[1].c.stats()}
			if now != last {
				logStats(false)
				last = [2]Stats{dirs[0].c.stats(), dirs[1].c.stats()}
			}
		}
	}
	cancel()
	logStats(true)
	// Closing the sockets unblocks the readers; the writers see ctx.
	cfg.A.Close()
	cfg.B.Close()
	wg.Wait()
	log.Info("delay line stopped", "err", err)
	return err
}

// check refuses a config Run cannot run and fills in the defaults.
func (cfg *Config) check() error {
	if cfg.A == nil || cfg.B == nil {
		return errors.New("delayline: both sockets are required")
	}
	if cfg.Delay < 0 || cfg.ExtraIPv4 < 0 || cfg.ExtraIPv6 < 0 {
		return fmt.Errorf("delayline: negative delay %v (IPv4 extra %v, IPv6 extra %v)", cfg.Delay, cfg.ExtraIPv4, cfg.ExtraIPv6)
	}
	if cfg.LossPercent < 0 || cfg.LossPercent >= 100 {
		return fmt.Errorf("delayline: loss %d%% out of range [0, 100)", cfg.LossPercent)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = DefaultStatsEvery
	}
	return nil
}

// kernelDrops returns the frames the kernel dropped on packet socket f
// since the last call (PACKET_STATISTICS resets on read); 0 for any other
// socket.
func kernelDrops(f *os.File) uint64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint64
	rc.Control(func(fd uintptr) {
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			n = uint64(st.Drops)
		}
	})
	return n
}

// newLoss returns a function that says, for each frame, whether to drop
// it: true for percent of them at random. Each direction has its own.
func newLoss(percent int) func() bool {
	if percent == 0 {
		return func() bool { return false }
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	return func() bool { return r.IntN(100) < percent }
}

// isARP reports whether frame (a virtio-net header, then Ethernet) is
// ARP. Loss spares ARP: on a real line packets are lost on the way, not
// in the neighbour lookup at either end, and a lost ARP exchange would
// show up as "no route to host", which no lossy internet path causes.
func isARP(frame []byte) bool {
	const ethertype = 10 + 12 // after the virtio-net header and two MACs
	return len(frame) >= ethertype+2 && frame[ethertype] == 0x08 && frame[ethertype+1] == 0x06
}

// Classes of frames, each with its own delay and queue.
const (
	classOther = iota // ARP and the rest
	classIPv4
	classIPv6
	numClasses
)

// classOf returns frame's class by its ethertype.
func classOf(frame []byte) int {
	const ethertype = 10 + 12 // after the virtio-net header and two MACs
	if len(frame) < ethertype+2 {
		return classOther
	}
	switch uint16(frame[ethertype])<<8 | uint16(frame[ethertype+1]) {
	case 0x0800:
		return classIPv4
	case 0x86dd:
		return classIPv6
	}
	return classOther
}

// read takes frames from f, stamps when they are due (delays by class)
// and queues them on their class's queue. A full queue drops the frame,
// and so does lose.
func read(ctx context.Context, f *os.File, qs [numClasses]chan frame, delays [numClasses]time.Duration, lose func() bool, c *counters) error {
	buf := make([]byte, maxFrame)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("delayline: read %s: %w", f.Name(), err)
		}
		c.frames.Add(1)
		if !isARP(buf[:n]) && lose() {
			c.lost.Add(1)
			continue
		}
		class := classOf(buf[:n])
		fr := frame{due: time.Now().Add(delays[class]), b: append([]byte(nil), buf[:n]...)}
		select {
		case qs[class] <- fr:
		default:
			c.queueFull.Add(1)
		}
	}
}

// write sends each queued frame to f once it is due. The delay is the same
// for every frame of a queue, so the queue is already in due order.
func write(ctx context.Context, f *os.File, q <-chan frame, c *counters) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		var fr frame
		select {
		case <-ctx.Done():
			return nil
		case fr = <-q:
		}
		if d := time.Until(fr.due); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		if _, err := f.Write(fr.b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A frame the other side cannot take (its link is down,
			// its qdisc is full) is lost, as on a wire.
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EMSGSIZE) {
				c.writeDropped.Add(1)
				continue
			}
			return fmt.Errorf("delayline: write %s: %w", f.Name(), err)
		}
	}
}

// FromFD wraps an inherited packet socket descriptor (from a parent that
// called Open) for Run. Inheritance leaves descriptors blocking; Run needs
// them non-blocking so that closing one interrupts its reader.
func FromFD(fd int, name string) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("delayline: descriptor %d: %w", fd, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

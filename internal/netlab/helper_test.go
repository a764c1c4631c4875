//go:build linux

package netlab_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"weft/internal/netlab"
	"weft/internal/netlab/delayline"
	"weft/internal/netlab/labtest"
)

// TestMain lets the test binary double as the lab's helper (delay line,
// whoami), so these tests do not depend on cmd/weft building.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "netlab-helper" {
		os.Exit(runHelper(os.Args[2:]))
	}
	// Helpers built with -race otherwise sleep a second on exit, which
	// would make every Down take that long.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}

func runHelper(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) == 0 {
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fdA := fs.Int("fd-a", 0, "")
	fdB := fs.Int("fd-b", 0, "")
	fd := fs.Int("fd", 0, "")
	delay := fs.Duration("delay", 0, "")
	loss := fs.Int("loss", 0, "")
	extra4 := fs.Duration("extra-ipv4", 0, "")
	extra6 := fs.Duration("extra-ipv6", 0, "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var err error
	switch args[0] {
	case "wire":
		var a, b *os.File
		if a, err = delayline.FromFD(*fdA, "a"); err == nil {
			if b, err = delayline.FromFD(*fdB, "b"); err == nil {
				err = delayline.Run(ctx, delayline.Config{A: a, B: b, Delay: *delay, ExtraIPv4: *extra4, ExtraIPv6: *extra6, LossPercent: *loss, Logger: log})
			}
		}
	case "whoami":
		var ln net.Listener
		if ln, err = net.FileListener(os.NewFile(uintptr(*fd), "whoami")); err == nil {
			err = netlab.ServeWhoami(ctx, ln)
		}
	default:
		err = fmt.Errorf("unknown helper %q", args[0])
	}
	if err != nil {
		log.Error("helper failed", "err", err)
		return 1
	}
	return 0
}

// labConfig is the Config of a test's lab: namespaces named
// wlt<PID>-<name>-…, state in a temporary directory, and this test binary
// as the helper. It skips the test unless it runs as root.
func labConfig(t *testing.T, name string) netlab.Config {
	t.Helper()
	labtest.SkipUnlessRoot(t)
	return netlab.Config{
		Prefix: fmt.Sprintf("wlt%d-%s-", os.Getpid(), name),
		Dir:    t.TempDir(),
		Helper: []string{os.Args[0], "netlab-helper"},
	}
}

// upLab brings topo up under a fresh prefix and removes it at cleanup.
func upLab(t *testing.T, topo netlab.Topology) *netlab.Lab {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	cfg := labConfig(t, hex.EncodeToString(b[:]))
	labtest.RemoveStale(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := netlab.Up(ctx, cfg, topo)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	return l
}

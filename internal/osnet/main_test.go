//go:build linux

package osnet

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if goroutines started by the tests (the TUN's
// listeners, netlink subscriptions, servers) outlive them.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if leaked := waitGoroutines(before); leaked != "" {
			fmt.Fprintf(os.Stderr, "osnet: goroutines leaked by the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines waits (bounded) for the goroutine count to fall back to
// n and returns the stacks of the extra ones if it does not.
func waitGoroutines(n int) string {
	for i := 0; i < 200; i++ {
		if runtime.NumGoroutine() <= n {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	var extra []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if !strings.Contains(g, "testing.(*M).Run") && !strings.Contains(g, "TestMain") {
			extra = append(extra, g)
		}
	}
	return strings.Join(extra, "\n\n")
}

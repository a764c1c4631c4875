//go:build linux

// Package labtest brings netlab labs up inside tests: a fresh namespace
// prefix per lab, cleanup through t.Cleanup, a clear skip without root,
// and the weft binary the lab's helpers (and tests' own daemons) run.
package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"weft/internal/netlab"
	"weft/internal/scenario"
)

// testPrefix starts the namespaces of every lab a test brings up; the PID
// after it says which test process owns them, so a later run can tell
// stale ones from live ones.
const testPrefix = "wlt"

// SkipUnlessRoot skips the test when it cannot create namespaces.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces); run as root, e.g. sudo make test")
	}
}

// Seed brings up the seed topology, changed by mods (e.g.
// func(t *netlab.Topology) { t.SetNAT("r-busan", netlab.NATHard) }), and
// takes it down at the end of the test.
func Seed(t testing.TB, mods ...func(*netlab.Topology)) *netlab.Lab {
	t.Helper()
	topo := netlab.SeedTopology()
	for _, m := range mods {
		m(&topo)
	}
	return Up(t, topo)
}

// StartTailnet runs a tailnet in lab (scenario.Start; opts.Weft defaults
// to WeftBinary), fails the test if it does not come up, and when the
// test fails logs the last 40 lines of the server's and each daemon's log.
func StartTailnet(t testing.TB, ctx context.Context, lab *netlab.Lab, opts scenario.Options) *scenario.Tailnet {
	t.Helper()
	if opts.Weft == "" {
		opts.Weft = WeftBinary(t)
	}
	tn, err := scenario.Start(ctx, lab, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(tn.LogTails(40))
		}
	})
	return tn
}

// Up brings up topo under a fresh namespace prefix and takes it down at
// the end of the test. Stale namespaces of test processes that have died
// are removed first.
func Up(t testing.TB, topo netlab.Topology) *netlab.Lab {
	t.Helper()
	SkipUnlessRoot(t)
	if err := topo.Validate(); err != nil {
		t.Fatalf("labtest: %v", err)
	}
	bin := WeftBinary(t)
	RemoveStale(t)
	var b [3]byte
	rand.Read(b[:])
	cfg := netlab.Config{
		Prefix: fmt.Sprintf("%s%d-%s-", testPrefix, os.Getpid(), hex.EncodeToString(b[:])),
		Dir:    t.TempDir(),
		Helper: []string{bin, "lab"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := netlab.Up(ctx, cfg, topo)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range l.Processes() {
				t.Logf("labtest: %s on %s (pid %d) logged:\n%s", p.Name, p.Node, p.PID, p.Logs())
			}
		}
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("labtest: %v", err)
		}
	})
	return l
}

var staleName = regexp.MustCompile(`^` + testPrefix + `(\d+)-`)

// RemoveStale removes the namespaces (and whatever still runs in them) of
// labs whose test process has died, e.g. killed by a test timeout before
// its cleanup ran. Up calls it; tests that call netlab.Up themselves with
// a "wlt<pid>-" prefix can call it too.
func RemoveStale(t testing.TB) {
	names, err := netlab.ListNamespaces(testPrefix)
	if err != nil {
		t.Logf("labtest: %v", err)
		return
	}
	done := map[int]bool{}
	for _, n := range names {
		m := staleName.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if done[pid] || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		done[pid] = true
		if err := netlab.Remove("", fmt.Sprintf("%s%d-", testPrefix, pid)); err != nil {
			t.Logf("labtest: removing stale lab namespaces of pid %d: %v", pid, err)
		}
	}
}

// buildPrefix starts the temporary directory of each test binary's weft
// build; the PID after it names the test process that owns it. Nothing
// removes a build when its test binary exits (a package has no hook for
// that), so each new build removes those of dead processes instead: a
// lab test package leaves one ~50 MB binary behind at most until the
// next lab test runs.
const buildPrefix = "weft-labtest-"

var staleBuild = regexp.MustCompile(`^` + buildPrefix + `(\d+)-`)

// removeStaleBuilds removes the weft builds under tmp whose test process
// has died.
func removeStaleBuilds(tmp string) {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		m := staleBuild.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(tmp, e.Name()))
		}
	}
}

// weftBuild is the one build of cmd/weft per test binary.
var weftBuild struct {
	once sync.Once
	path string
	err  error
}

// WeftBinary returns the path of a weft binary: $WEFT_BINARY if set,
// otherwise ./cmd/weft of this module built once per test binary into a
// temporary directory.
func WeftBinary(t testing.TB) string {
	t.Helper()
	weftBuild.once.Do(func() {
		if p := os.Getenv("WEFT_BINARY"); p != "" {
			weftBuild.path = p
			return
		}
		weftBuild.path, weftBuild.err = build()
	})
	if weftBuild.err != nil {
		t.Fatalf("labtest: %v", weftBuild.err)
	}
	return weftBuild.path
}

// goTool finds the go command: on PATH, or beside the running toolchain.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func build() (string, error) {
	goCmd := goTool()
	out, err := exec.Command(goCmd, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if root == "." || root == "" {
		return "", fmt.Errorf("find the module: not inside one")
	}
	removeStaleBuilds(os.TempDir())
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", buildPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weft")
	cmd := exec.Command(goCmd, "build", "-o", bin, "./cmd/weft")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build weft: %w\n%s", err, out)
	}
	return bin, nil
}

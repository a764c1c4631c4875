//go:build linux

package labtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRemoveStaleBuilds removes the build of a test process that has
// exited and keeps those of live processes and anything not a build.
func TestRemoveStaleBuilds(t *testing.T) {
	tmp := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{ // name → kept
		fmt.Sprintf("%s%d-123", buildPrefix, dead.Process.Pid): false,
		fmt.Sprintf("%s%d-456", buildPrefix, os.Getpid()):      true,
		fmt.Sprintf("%s%d-789", buildPrefix, os.Getppid()):     true,
		buildPrefix + "4077390073":                             true, // no PID: an older run's, not ours to judge
		"other-dir":                                            true,
	}
	for n := range names {
		if err := os.MkdirAll(filepath.Join(tmp, n, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleBuilds(tmp)
	for n, kept := range names {
		_, err := os.Stat(filepath.Join(tmp, n))
		if got := err == nil; got != kept {
			t.Errorf("%s: kept = %v; want %v", n, got, kept)
		}
	}
}

package tstest

import (
	"os"
	"testing"
)

// OwnerOnlySocket fails t unless path is a socket (not followed if a
// link) that only its owner may read and write (mode 0600).
func OwnerOnlySocket(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a 0600 socket", fi.Mode())
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnits checks the unit files in dist/systemd: the command each
// starts is a weft command line this binary accepts, and, where
// systemd-analyze is installed, systemd accepts the unit without a
// warning.
func TestSystemdUnits(t *testing.T) {
	units, err := filepath.Glob("../../dist/systemd/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no unit files in dist/systemd: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Sample values for the variables the units take from their
	// environment files.
	vars := strings.NewReplacer("${WEFT_LISTEN}", ":8080", "${WEFT_SERVER_URL}", "https://ctrl.example")
	for _, unit := range units {
		t.Run(filepath.Base(unit), func(t *testing.T) {
			b, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			var execStart []string
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
					execStart = strings.Fields(vars.Replace(v))
				}
			}
			if len(execStart) < 2 || execStart[0] != "/usr/local/bin/weft" {
				t.Fatalf("ExecStart = %q; want /usr/local/bin/weft and a command", execStart)
			}
			var out, errb bytes.Buffer
			if code := run(context.Background(), append(execStart[1:], "--help"), &out, &errb); code != 0 {
				t.Fatalf("weft %s: exit %d: %s", strings.Join(execStart[1:], " "), code, errb.String())
			}

			analyze, err := exec.LookPath("systemd-analyze")
			if err != nil {
				t.Skip("systemd-analyze is not installed: the unit's systemd syntax is not checked")
			}
			// verify wants the binary to exist: point it at this test
			// binary, in a copy of the unit.
			dir := t.TempDir()
			copyPath := filepath.Join(dir, filepath.Base(unit))
			if err := os.WriteFile(copyPath, bytes.ReplaceAll(b, []byte("/usr/local/bin/weft"), []byte(self)), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(analyze, "verify", copyPath)
			cmd.Dir = dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil || strings.Contains(stderr.String(), filepath.Base(unit)) {
				t.Fatalf("systemd-analyze verify %s: %v\n%s", filepath.Base(unit), err, stderr.String())
			}
		})
	}
}

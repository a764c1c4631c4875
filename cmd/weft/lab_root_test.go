//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
)

// TestLabCLI drives a real weft binary through up, status, exec and down,
// the way a person would.
func TestLabCLI(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	bin := labtest.WeftBinary(t)
	name := fmt.Sprintf("t%x", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel) // after the cleanup below, which still needs ctx
	weft := func(args ...string) (string, int) {
		cmd := exec.CommandContext(ctx, bin, append([]string{"lab", "--name", name}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Errorf("weft %v: %v", args, err)
			code = -1
		}
		return string(out), code
	}
	t.Cleanup(func() {
		weft("down")
		os.RemoveAll(filepath.Join(labDirRoot, name))
	})

	if out, code := weft("up", "seed", "--nat", "r-busan=hard", "--delay", "fukuoka=3"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	out, code := weft("status", "--json")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	var st struct {
		Nodes []netlab.Node `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	byName := map[string]netlab.Node{}
	for _, n := range st.Nodes {
		byName[n.Name] = n
	}
	if n := byName["r-busan"]; n.NAT != netlab.NATHard || n.WANAddr.String() != "203.0.113.21" {
		t.Errorf("status r-busan = %+v", n)
	}
	if n := byName["r-fukuoka"]; n.DelayMS != 3 {
		t.Errorf("status r-fukuoka = %+v; want a 3 ms delay", n)
	}
	if out, _ := weft("exec", "mac", "--", "cat", "/proc/self/net/dev"); !strings.Contains(out, "eth0:") {
		t.Errorf("exec in mac sees:\n%s", out)
	}
	if _, code := weft("exec", "pc", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec exit status %d; want 7 passed through", code)
	}
	if curl, err := exec.LookPath("curl"); err == nil {
		if out, _ := weft("exec", "mac", "--", curl, "-s", "-m", "5", "http://203.0.113.80/"); strings.TrimSpace(out) != "203.0.113.22" {
			t.Errorf("whoami from mac = %q; want r-fukuoka's WAN 203.0.113.22", out)
		}
	}
	if out, code := weft("down"); code != 0 {
		t.Fatalf("down: exit %d\n%s", code, out)
	}
	if left, _ := netlab.ListNamespaces("wl-" + name + "-"); len(left) > 0 {
		t.Errorf("namespaces left after down: %v", left)
	}
	if out, code := weft("status"); code != 1 || !strings.Contains(out, "not up") {
		t.Errorf("status after down: exit %d\n%s", code, out)
	}
}

//go:build linux

package netlab

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestNamespaceMountedOnNetnsDirMount checks that a lab namespace's file
// is mounted inside netnsDir's own shared mount, not on the directory of
// the root file system: a namespace mounted there is hidden (and can be
// neither unmounted nor removed) once an `ip netns add` run by hand binds
// netnsDir onto itself.
func TestNamespaceMountedOnNetnsDirMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces); run as root")
	}
	name := "wlt" + strconv.Itoa(os.Getpid()) + "-nsdir"
	if err := createNS(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := deleteNS(name); err != nil {
			t.Error(err)
		}
	})
	mounts := readMountInfo(t)
	dir, ok := mounts[netnsDir]
	if !ok {
		t.Fatalf("%s is not a mount point after createNS", netnsDir)
	}
	if !strings.Contains(dir.optional, "shared:") {
		t.Errorf("%s is not a shared mount (optional fields %q)", netnsDir, dir.optional)
	}
	ns, ok := mounts[netnsDir+"/"+name]
	if !ok {
		t.Fatalf("namespace %s is not mounted", name)
	}
	if ns.parent != dir.id {
		t.Errorf("namespace mounted under mount %s, want %s's mount %s", ns.parent, netnsDir, dir.id)
	}
	// Running the ip tool's preparation again must leave the namespace
	// reachable by name.
	if err := prepareNetnsDir(); err != nil {
		t.Fatal(err)
	}
	if _, ok := readMountInfo(t)[netnsDir+"/"+name]; !ok {
		t.Errorf("namespace %s hidden after a second prepareNetnsDir", name)
	}
}

type mountEntry struct{ id, parent, optional string }

// readMountInfo returns this process's mounts by mount point (the last,
// topmost, for a point mounted more than once).
func readMountInfo(t *testing.T) map[string]mountEntry {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]mountEntry{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		var optional []string
		for _, f := range fields[6:] {
			if f == "-" {
				break
			}
			optional = append(optional, f)
		}
		out[fields[4]] = mountEntry{id: fields[0], parent: fields[1], optional: strings.Join(optional, " ")}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

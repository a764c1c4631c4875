//go:build linux

package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Lab processes share the host's filesystem, and with it the host's
// /etc/resolv.conf: a weft daemon that manages DNS would change the
// host's resolver from inside a lab namespace. So every process netlab
// starts (Start, Exec, Command) runs in a private mount namespace of its
// own where /etc/resolv.conf is the node's file, <lab dir>/etc/<node>/
// resolv.conf (as `ip netns exec` does with /etc/netns/NAME/resolv.conf).
// The host's file is never written, and a test can read or prepare what
// a node's resolver configuration says through ResolvConf.

// resolvConfTarget is the file the node's own copy is mounted over.
const resolvConfTarget = "/etc/resolv.conf"

// mountScript runs in the new mount namespace: $0 is the node's file,
// "$@" the command. exec keeps the PID, so Process.PID is the command's.
const mountScript = `mount --bind "$0" ` + resolvConfTarget + ` && exec "$@"`

// ResolvConf is the path of the file lab processes on this node see as
// /etc/resolv.conf. It exists once a process was started on the node or
// ResolvConf was called; at first it holds only a comment.
func (n *Node) ResolvConf() (string, error) {
	p := filepath.Join(n.lab.dir, "etc", n.Name, "resolv.conf")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("netlab: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if os.IsExist(err) {
		return p, nil
	}
	if err != nil {
		return "", fmt.Errorf("netlab: %w", err)
	}
	defer f.Close()
	// No nameserver: nothing in the lab may fall back on the host's
	// resolver.
	if _, err := fmt.Fprintf(f, "# %s's resolv.conf in the lab (netlab); the host's is not used\n", n.Name); err != nil {
		return "", fmt.Errorf("netlab: %w", err)
	}
	return p, nil
}

// isolate returns argv wrapped so it runs in a private mount namespace
// with the node's resolv.conf mounted over /etc/resolv.conf.
func (n *Node) isolate(argv []string) ([]string, error) {
	rc, err := n.ResolvConf()
	if err != nil {
		return nil, err
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("netlab: lab processes need unshare (util-linux) for their own mount namespace: %w", err)
	}
	return append([]string{unshare, "--mount", "--propagation", "private", "--", "sh", "-c", mountScript, rc}, argv...), nil
}

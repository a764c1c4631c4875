package main

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"weft/internal/osdns"
	"weft/internal/tailnet"
)

// TestUserspaceDaemonRestoresDNSLeftByKernelRun: a kernel-mode run on
// the state dir was killed with resolv.conf pointing at weft's resolver;
// a daemon started on it in userspace mode (which changes no DNS itself)
// still puts the original back at start. The "resolv.conf" here is a
// temporary file the backup names, never the host's.
func TestUserspaceDaemonRestoresDNSLeftByKernelRun(t *testing.T) {
	dir := t.TempDir()
	state, conf := filepath.Join(dir, "state"), filepath.Join(dir, "resolv.conf")
	original := []byte("nameserver 192.0.2.53\n")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, original, 0o644); err != nil {
		t.Fatal(err)
	}
	m := osdns.NewResolvConf(osdns.Options{StateDir: state, ResolvConf: conf})
	if err := m.Set(osdns.Config{Nameservers: []netip.Addr{tailnet.ResolverV4}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(conf); bytes.Equal(b, original) {
		t.Fatal("the setup did not change the file")
	}
	// The killed run leaves it so; now a userspace daemon starts.
	sock := filepath.Join(dir, "weft.sock")
	background(t, "--socket", sock, "daemon", "--tun=userspace-networking", "--state-dir", state)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's socket: %v", err)
		}
	}
	// The daemon takes its socket before it repairs DNS, so the socket
	// may accept first: wait for the repair, but not forever.
	var b []byte
	var statErr error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ = os.ReadFile(conf)
		_, statErr = os.Stat(osdns.BackupPath(state))
		if (bytes.Equal(b, original) && os.IsNotExist(statErr)) || time.Now().After(deadline) {
			break
		}
	}
	if !bytes.Equal(b, original) {
		t.Fatalf("after a userspace daemon's start the file is %q, want the original %q", b, original)
	}
	if !os.IsNotExist(statErr) {
		t.Errorf("the backup outlived the restore: %v", statErr)
	}
}

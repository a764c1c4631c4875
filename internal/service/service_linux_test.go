package service

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLinuxInstall installs into a scratch root: the unit lands in
// /etc/systemd/system, systemd reloads and enables it, and uninstall
// undoes both.
func TestLinuxInstall(t *testing.T) {
	root := t.TempDir()
	var ran []string
	m := Manager{Root: root, Run: func(_ context.Context, name string, args ...string) error {
		ran = append(ran, name+" "+strings.Join(args, " "))
		return nil
	}}
	ctx := context.Background()
	if err := m.Uninstall(ctx); err == nil {
		t.Error("uninstalling what is not installed succeeded")
	}
	spec := Spec{Binary: "/usr/local/bin/weft", Args: []string{"--tun=userspace-networking"}}
	if err := m.Install(ctx, spec); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/weft.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nExecStart=/usr/local/bin/weft daemon --tun=userspace-networking\n") {
		t.Errorf("installed unit:\n%s", b)
	}
	if err := m.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/system/weft.service")); !os.IsNotExist(err) {
		t.Errorf("unit still there after uninstall: %v", err)
	}
	want := []string{"systemctl daemon-reload", "systemctl enable --now weft.service", "systemctl disable --now weft.service", "systemctl daemon-reload"}
	if !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
}

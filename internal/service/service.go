// Package service installs the node daemon as the operating system's
// service, so that it starts at boot, restarts after a crash and runs with
// nobody logged in: a systemd unit on Linux, a launchd daemon on macOS and
// a Windows service. What each OS gets (unit file, property list, service
// command line, the local API's named pipe ACL) is rendered by plain
// functions in this file and its siblings, which are unit-tested on any
// OS; only the calls to systemctl, launchctl and the Windows service
// manager are per OS (service_linux.go, service_darwin.go,
// service_windows.go).
package service

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Name is the service's name on every OS (systemd unit weft.service,
// Windows service "weft"); launchd uses Label.
const Name = "weft"

// Label is the launchd job's label on macOS.
const Label = "dev.weft.daemon"

// Spec is what the service runs: Binary with "daemon" and Args.
type Spec struct {
	// Binary is the absolute path of the weft executable.
	Binary string
	// Args follow "daemon" on the command line (state dir, socket and
	// any flags such as --tun=userspace-networking).
	Args []string
}

// Runner runs a system tool; Manager's calls go through it so tests can
// see them without running anything.
type Runner func(ctx context.Context, name string, args ...string) error

// Manager installs and controls the service.
type Manager struct {
	// Root is prefixed to every file path written (tests); "" is "/".
	Root string
	// Run runs system tools; nil runs them for real.
	Run Runner
}

func (m Manager) run(ctx context.Context, name string, args ...string) error {
	if m.Run != nil {
		return m.Run(ctx, name, args...)
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("service: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// path is p under m.Root.
func (m Manager) path(p string) string {
	if m.Root == "" {
		return p
	}
	return filepath.Join(m.Root, p)
}

// writeFile writes a service file, making its directory.
func (m Manager) writeFile(p string, content []byte, mode os.FileMode) error {
	full := m.path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := os.WriteFile(full, content, mode); err != nil {
		return fmt.Errorf("service: %w (run as root / Administrator)", err)
	}
	return nil
}

// Defaults are the daemon's state dir and local API address on goos; env
// reads the environment (Windows keeps state under %ProgramData%).
func Defaults(goos string, env func(string) string) (stateDir, socket string) {
	switch goos {
	case "windows":
		pd := env("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return pd + `\weft`, PipeName
	case "darwin":
		return "/Library/Application Support/weft", "/var/run/weft/weft.sock"
	}
	return "/var/lib/weft-node", "/run/weft/weft.sock"
}

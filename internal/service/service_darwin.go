package service

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Install writes the launchd daemon's property list and loads it, which
// starts the daemon now and at every boot.
func (m Manager) Install(ctx context.Context, spec Spec) error {
	if err := m.writeFile(LaunchdPath, LaunchdPlist(spec), 0o644); err != nil {
		return err
	}
	return m.run(ctx, "launchctl", "bootstrap", "system", m.path(LaunchdPath))
}

// Uninstall unloads the daemon (stopping it) and removes its property
// list; the state dir stays.
func (m Manager) Uninstall(ctx context.Context) error {
	if _, err := os.Stat(m.path(LaunchdPath)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("service: %s is not installed", LaunchdPath)
	}
	if err := m.run(ctx, "launchctl", "bootout", "system/"+Label); err != nil {
		return err
	}
	if err := os.Remove(m.path(LaunchdPath)); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	return nil
}

// Start (re)starts the loaded daemon.
func (m Manager) Start(ctx context.Context) error {
	return m.run(ctx, "launchctl", "kickstart", "-k", "system/"+Label)
}

// Stop stops the daemon until the next boot: it is unloaded, the
// property list stays (Start loads it again).
func (m Manager) Stop(ctx context.Context) error {
	return m.run(ctx, "launchctl", "bootout", "system/"+Label)
}

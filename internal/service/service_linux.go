package service

import (
	"context"
	"errors"
	"fmt"
	"os"

	"weft/dist"
)

// unitPath is where the node unit is installed.
const unitPath = "/etc/systemd/system/" + Name + ".service"

// Install writes the systemd unit (dist/systemd/weft.service with spec's
// command line) and enables and starts it.
func (m Manager) Install(ctx context.Context, spec Spec) error {
	unit, err := SystemdUnit(dist.SystemdNode, spec)
	if err != nil {
		return err
	}
	if err := m.writeFile(unitPath, []byte(unit), 0o644); err != nil {
		return err
	}
	if err := m.run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	return m.run(ctx, "systemctl", "enable", "--now", Name+".service")
}

// Uninstall stops and disables the unit and removes its file; the state
// dir stays (delete it to forget the node).
func (m Manager) Uninstall(ctx context.Context) error {
	if _, err := os.Stat(m.path(unitPath)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("service: %s is not installed", unitPath)
	}
	if err := m.run(ctx, "systemctl", "disable", "--now", Name+".service"); err != nil {
		return err
	}
	if err := os.Remove(m.path(unitPath)); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	return m.run(ctx, "systemctl", "daemon-reload")
}

// Start starts the installed unit.
func (m Manager) Start(ctx context.Context) error {
	return m.run(ctx, "systemctl", "start", Name+".service")
}

// Stop stops the unit; it starts again at boot.
func (m Manager) Stop(ctx context.Context) error {
	return m.run(ctx, "systemctl", "stop", Name+".service")
}

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"weft/internal/nodestate"
	"weft/internal/osdns"
	"weft/internal/service"
)

// newDNSRestoreCmd is `weft dns restore`: put back the DNS configuration
// a daemon changed and could not restore itself because it was killed
// (SIGKILL, OOM, a crash). The systemd unit runs it after every stop of
// the daemon (ExecStopPost), so a machine whose daemon died and is not
// started again is never left pointing at 100.100.100.100.
func newDNSRestoreCmd(g *globals) *cobra.Command {
	defState, _ := service.Defaults(runtime.GOOS, os.Getenv)
	var stateDir string
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Put back the DNS settings a stopped or killed daemon left changed (the daemon's state dir says what)",
		Long: "Put back the resolver configuration that the daemon recorded in its state dir\n" +
			"before it changed it, and remove the resolver's address from the loopback\n" +
			"device. The daemon does this itself on `weft down`, on exit and at its next\n" +
			"start; this command is for the time between a crash and a restart (the\n" +
			"systemd unit runs it after every stop). It refuses while a daemon runs on the\n" +
			"state dir.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			restored, err := restoreDNS(stateDir)
			if err != nil {
				return err
			}
			if restored {
				fmt.Fprintln(g.stdout, "DNS restored")
			} else {
				fmt.Fprintln(g.stdout, "nothing to restore")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", defState, "the daemon's state directory")
	return cmd
}

// restoreDNS undoes the DNS changes recorded in stateDir, while no daemon
// holds it, and reports whether there was anything to undo.
func restoreDNS(stateDir string) (bool, error) {
	if _, err := os.Stat(stateDir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	st, err := nodestate.Open(stateDir)
	if err != nil {
		return false, err
	}
	release, err := st.Lock()
	if errors.Is(err, nodestate.ErrLocked) {
		return false, fmt.Errorf("dns restore: a weft daemon runs on %s and keeps DNS itself; `weft down` restores it, or stop the daemon first", stateDir)
	}
	if err != nil {
		return false, err
	}
	defer release()
	_, statErr := os.Stat(osdns.BackupPath(stateDir))
	if err := osdns.Recover(stateDir); err != nil {
		return false, fmt.Errorf("dns restore: %w", err)
	}
	if err := osdns.RemoveLoopback(); err != nil {
		return false, fmt.Errorf("dns restore: removing the resolver's address from the loopback device: %w", err)
	}
	return statErr == nil, nil
}

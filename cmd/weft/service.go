package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"weft/internal/service"
)

// newServiceCmd is `weft service install|uninstall|start|stop`: the node
// daemon as a systemd unit (Linux), a launchd daemon (macOS) or a Windows
// service, started at boot and restarted after a failure.
func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Install or control the node daemon as a system service",
		Long: "Run the node daemon as the system's service: a systemd unit on Linux, a\n" +
			"launchd daemon on macOS, a Windows service on Windows. It starts at boot,\n" +
			"restarts after a failure and needs nobody logged in. Needs root (Administrator).",
		Args: cobra.NoArgs,
	}
	m := service.Manager{}
	install := &cobra.Command{
		Use:   "install [-- daemon flags]",
		Short: "Install the daemon as a service and start it",
		Long: "Install the daemon as a service and start it. Flags after -- are added to\n" +
			"`weft daemon` (for example: weft service install -- --tun=userspace-networking).",
		RunE: func(cmd *cobra.Command, args []string) error {
			if d := cmd.ArgsLenAtDash(); d != 0 && len(args) > 0 {
				return usageError{fmt.Errorf("service install: put daemon flags after --")}
			}
			spec, err := serviceSpec(args)
			if err != nil {
				return err
			}
			if err := m.Install(cmd.Context(), spec); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "installed and started: %s daemon %s\n", spec.Binary, strings.Join(spec.Args, " "))
			return nil
		},
	}
	simple := func(use, short, done string, fn func(*cobra.Command) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fn(cmd); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, done)
			return nil
		}}
	}
	cmd.AddCommand(install,
		simple("uninstall", "Stop and remove the service (the state dir stays)", "uninstalled", func(c *cobra.Command) error { return m.Uninstall(c.Context()) }),
		simple("start", "Start the installed service", "started", func(c *cobra.Command) error { return m.Start(c.Context()) }),
		simple("stop", "Stop the service (it starts again at boot)", "stopped", func(c *cobra.Command) error { return m.Stop(c.Context()) }),
	)
	return cmd
}

// serviceSpec is this binary as `weft daemon` with the OS's default state
// dir and socket, plus extra.
func serviceSpec(extra []string) (service.Spec, error) {
	self, err := os.Executable()
	if err != nil {
		return service.Spec{}, fmt.Errorf("service: find this binary: %w", err)
	}
	if self, err = filepath.Abs(self); err != nil {
		return service.Spec{}, fmt.Errorf("service: %w", err)
	}
	state, sock := service.Defaults(runtime.GOOS, os.Getenv)
	return service.Spec{Binary: self, Args: append([]string{"--state-dir", state, "--socket", sock}, extra...)}, nil
}

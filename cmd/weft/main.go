// Command weft is the one binary of the weft mesh VPN: the control server,
// the relay, the node daemon and the CLI that drives them, and the network
// lab used to test them. Each subcommand lives in its own file and only
// parses flags before calling into internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"weft/internal/service"

	"github.com/spf13/cobra"

	"weft/internal/version"
)

func main() {
	if service.IsService() {
		os.Exit(runService(os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runService runs weft under the Windows service manager, which stops it
// through its own protocol rather than a signal; output goes to weft.log
// in the default state dir.
func runService(args []string) int {
	state, _ := service.Defaults(runtime.GOOS, os.Getenv)
	var out io.Writer = io.Discard
	if err := os.MkdirAll(state, 0o700); err == nil {
		if f, err := os.OpenFile(filepath.Join(state, "weft.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			defer f.Close()
			out = f
		}
	}
	code := 0
	err := service.RunService(func(ctx context.Context) error {
		if code = run(ctx, args, out, out); code != 0 {
			return exitError{code}
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(out, "weft: service: %v\n", err)
		return 1
	}
	return code
}

// usageError marks an error in how the command was called; it exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError carries a specific exit status with an already-printed message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// globals holds what every subcommand may need: its output streams and the
// root flags. It is passed to each command constructor; there are no
// package-level flag variables.
type globals struct {
	stdout, stderr io.Writer
	socket         string // local API socket of the node daemon
}

// run executes the weft CLI with args and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "weft: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintln(stderr, "Run 'weft --help' for usage.")
		return 2
	}
	return 1
}

// groupCmd makes a command that only holds subcommands: run alone it
// prints its help, and it takes no arguments of its own (so a mistyped
// subcommand is an error).
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	cmd.AddCommand(subs...)
	return cmd
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "weft",
		Short:         "weft is a self-hosted mesh VPN",
		Long:          "weft connects your machines into one private network: WireGuard end to end,\ndirect through NAT when possible, through an encrypted relay when not.",
		SilenceUsage:  true,
		SilenceErrors: true,
		// An unknown subcommand is an error, not a help page.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	// weft --version says what `weft version` says.
	v := version.Get()
	root.Version = v.Version
	root.SetVersionTemplate(fmt.Sprintf("weft %s\ncommit %s\n%s\n", v.Version, v.Commit, v.Go))
	defSocket := os.Getenv("WEFT_SOCKET")
	if defSocket == "" {
		_, defSocket = service.Defaults(runtime.GOOS, os.Getenv)
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", defSocket, "path of the node daemon's local API socket (env WEFT_SOCKET)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(
		newServerCmd(g), newDaemonCmd(g), newUpCmd(g), newDownCmd(g), newLogoutCmd(g), newStatusCmd(g), newHealthCmd(g),
		newVersionCmd(g),
		newAdminCmd(g),
		newNetcheckCmd(g),
		newSTUNCmd(g),
		newRelayCmd(g),
		newSetCmd(g), newExitNodeCmd(g),
		newPingCmd(g),
		newSpeedtestCmd(g),
		newServiceCmd(g),
		newDNSCmd(g),
	)
	root.AddCommand(osCommands(g)...)
	return root
}

// isCobraUsageError recognises cobra's own argument errors, which it does
// not type.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

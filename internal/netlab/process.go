//go:build linux

package netlab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 2 * time.Second

// Process is a long-running program started inside a node's namespace. Its
// stdout and stderr go to one log file in the lab's directory.
type Process struct {
	Name string `json:"name"`
	Node string `json:"node"`
	PID  int    `json:"pid"`
	Log  string `json:"log"`

	lab  *Lab
	done chan struct{} // closed by the waiter goroutine once the process is reaped; nil if started by another run
	err  error         // exit error; written before done is closed
}

// Wait blocks until the process exits and returns its exit error. For a
// process recorded by another run (see Open) the exit status is unknown
// and Wait returns nil once the PID is gone.
func (p *Process) Wait() error {
	if p.done == nil {
		for alive(p.PID) {
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	<-p.done
	return p.err
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	if p.done == nil {
		return !alive(p.PID)
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill stops the process: SIGTERM, then SIGKILL if it is still running
// after a grace period. It returns once the process is reaped. A process
// recorded by another run (see Open) is left alone if it has left the
// lab's namespaces, since its PID may since belong to someone else.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	if p.done == nil {
		if p.lab != nil && pidInNS(p.PID, p.lab.namespaces()) {
			stopPIDs([]int{p.PID}, stopGrace)
		}
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	<-p.done
	return nil
}

// Logs returns what the process has written so far.
func (p *Process) Logs() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(no logs: %v)", err)
	}
	return string(b)
}

// Start runs argv inside the node's namespace (and a private mount
// namespace with the node's resolv.conf, see ResolvConf) as a long-running
// process in its own session, its output appended to <dir>/logs/<node>.<name>.log. The
// process lives until Kill or Lab.Down; ctx only bounds starting it.
func (n *Node) Start(ctx context.Context, name string, argv ...string) (*Process, error) {
	return n.lab.start(ctx, n, name, argv, nil)
}

func (l *Lab) start(ctx context.Context, n *Node, name string, argv []string, extra []*os.File) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("netlab: start %s on %s: empty command", name, n.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("netlab: start %s on %s: %w", name, n.Name, err)
	}
	logDir := filepath.Join(l.dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	logPath := filepath.Join(logDir, n.Name+"."+strings.ReplaceAll(name, "/", "_")+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	defer logf.Close()
	argv, err = n.isolate(argv)
	if err != nil {
		return nil, fmt.Errorf("netlab: start %s on %s: %w", name, n.Name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = extra
	// Its own session: a terminal's Ctrl-C after `weft lab up` must not
	// reach the lab's processes, and they must outlive the CLI.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := n.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("netlab: start %s on %s: %w", name, n.Name, err)
	}
	p := &Process{Name: name, Node: n.Name, PID: cmd.Process.Pid, Log: logPath, lab: l, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return p, err
	}
	l.log.Debug("process started", "node", n.Name, "name", name, "pid", p.PID, "log", logPath)
	return p, nil
}

// Exec runs argv inside the node's namespace and returns its combined
// output. ctx cancellation kills it.
func (n *Node) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("netlab: exec on %s: empty command", n.Name)
	}
	argv, err := n.isolate(argv)
	if err != nil {
		return nil, fmt.Errorf("netlab: exec on %s: %w", n.Name, err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := n.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("netlab: exec %s on %s: %w", argv[0], n.Name, err)
	}
	if err := cmd.Wait(); err != nil {
		return out.Bytes(), fmt.Errorf("netlab: exec %s on %s: %w", argv[0], n.Name, err)
	}
	return out.Bytes(), nil
}

// Command prepares cmd to run inside the node's namespace: call the
// returned start instead of cmd.Start. It lets callers attach their own
// stdio (as `weft lab exec` does) and then Wait as usual.
func (n *Node) Command(cmd *exec.Cmd) (start func() error) {
	return func() error {
		if cmd.Err != nil {
			return cmd.Err
		}
		argv, err := n.isolate(append([]string{cmd.Path}, cmd.Args[1:]...))
		if err != nil {
			return err
		}
		cmd.Path, cmd.Args = argv[0], argv
		return n.Do(cmd.Start)
	}
}

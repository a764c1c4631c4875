//go:build linux

// Package scenario runs a whole weft tailnet inside a netlab lab: the
// control server on a public host, a daemon on each chosen host, each
// brought up with a pre-auth key, every part a real `weft` process. Lab
// tests and `weft demo` both stand on it, so what the tests prove is what
// the demo shows.
package scenario

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netutil"
)

// Options configure Start. Weft is required; the rest have defaults.
type Options struct {
	// Weft is the path of the weft binary to run.
	Weft string
	// Server is the public host the control server runs on; "ctrl" if
	// empty.
	Server string
	// Port is the control server's port; 8080 if zero.
	Port int
	// Hosts are the hosts to run daemons on, in order.
	Hosts []string
	// User owns the nodes; "alice" if empty.
	User string
	// ServerDataDir is the control server's data directory; <lab
	// dir>/server if empty. A directory given here is the caller's:
	// Start neither empties nor removes it (a test may have mounted a
	// small filesystem there).
	ServerDataDir string
	// ServerArgs and DaemonArgs are added to the server's and every
	// daemon's command line.
	ServerArgs, DaemonArgs []string
	// DaemonArgv, if set, rewrites a host's daemon command line (extra
	// flags, or a wrapper that drops privileges) just before it starts.
	DaemonArgv func(host string, argv []string) []string
	// UpArgs returns extra `weft up` arguments for a host; nil for none.
	UpArgs func(host string) []string
	// TLSCert and TLSKey, when set, make the server serve HTTPS with
	// them (weft server --tls-cert/--tls-key): ServerURL is https://,
	// and the default relay map names the server's embedded relay on
	// that TLS port. CAFile is the private CA that signed the
	// certificate: StartServer's health check trusts it, and every Up
	// passes --ca-file CAFile. Each is read when used, so a test may
	// replace the files and restart the server with another
	// certificate.
	TLSCert, TLSKey, CAFile string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// ExitNodes is an Options.UpArgs under which the hosts named offer
// themselves as exit nodes (weft up --advertise-exit-node) and the
// others add nothing.
func ExitNodes(hosts ...string) func(host string) []string {
	return func(host string) []string {
		if slices.Contains(hosts, host) {
			return []string{"--advertise-exit-node"}
		}
		return nil
	}
}

// Tailnet is a running tailnet in a lab. Its methods are safe for
// concurrent use.
type Tailnet struct {
	Lab       *netlab.Lab
	ServerURL string
	// ServerURL6 is the server's URL at its IPv6 address, when its host
	// has one; IPv6-only hosts come up with it (ServerURLFor).
	ServerURL6 string
	AuthKey    string // reusable key of Options.User

	opts    Options
	dataDir string
	log     *slog.Logger

	mu      sync.Mutex
	server  *netlab.Process            // guarded by mu
	daemons map[string]*netlab.Process // guarded by mu
}

// Start runs the server and the daemons and brings every host up, each
// from empty state. On error
// the processes already started are left to the lab's cleanup.
func Start(ctx context.Context, lab *netlab.Lab, opts Options) (*Tailnet, error) {
	if opts.Weft == "" {
		return nil, errors.New("scenario: Options.Weft (the weft binary) is required")
	}
	if opts.Server == "" {
		opts.Server = "ctrl"
	}
	if opts.Port == 0 {
		opts.Port = 8080
	}
	if opts.User == "" {
		opts.User = "alice"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := lab.Node(opts.Server)
	if srv == nil {
		return nil, fmt.Errorf("scenario: the lab has no host %q for the server", opts.Server)
	}
	scheme := "http"
	if opts.TLSCert != "" {
		scheme = "https"
	}
	tn := &Tailnet{
		Lab:       lab,
		ServerURL: fmt.Sprintf("%s://%s:%d", scheme, srv.Addr(), opts.Port),
		opts:      opts,
		dataDir:   cmp.Or(opts.ServerDataDir, filepath.Join(lab.Dir(), "server")),
		log:       log,
		daemons:   map[string]*netlab.Process{},
	}
	if a := srv.Addr6(); a.IsValid() {
		tn.ServerURL6 = fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(a.String(), strconv.Itoa(opts.Port)))
	}
	// A new tailnet: state left in the lab's directory by an earlier run
	// of the same lab name would make the server refuse to create the
	// user again and the daemons rejoin as the old nodes.
	var stale []string
	if opts.ServerDataDir == "" {
		stale = append(stale, tn.dataDir)
	}
	for _, h := range opts.Hosts {
		stale = append(stale, tn.StateDir(h))
	}
	for _, d := range stale {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("scenario: remove stale state: %w", err)
		}
	}
	if err := tn.StartServer(ctx); err != nil {
		return nil, err
	}
	if _, err := tn.Admin(ctx, "users", "create", opts.User); err != nil {
		return nil, err
	}
	out, err := tn.Admin(ctx, "keys", "create", "--user", opts.User, "--reusable", "--expiry", "24h")
	if err != nil {
		return nil, err
	}
	tn.AuthKey = strings.TrimSpace(string(out))
	for _, h := range opts.Hosts {
		if err := tn.StartDaemon(ctx, h); err != nil {
			return nil, err
		}
	}
	for _, h := range opts.Hosts {
		var extra []string
		if opts.UpArgs != nil {
			extra = opts.UpArgs(h)
		}
		if err := tn.Up(ctx, h, extra...); err != nil {
			return nil, err
		}
	}
	return tn, nil
}

func (tn *Tailnet) node(name string) (*netlab.Node, error) {
	n := tn.Lab.Node(name)
	if n == nil {
		return nil, fmt.Errorf("scenario: no node %q in the lab", name)
	}
	return n, nil
}

// StartServer starts the control server (again, after KillServer) and
// waits until it answers /healthz.
func (tn *Tailnet) StartServer(ctx context.Context) error {
	srv, err := tn.node(tn.opts.Server)
	if err != nil {
		return err
	}
	argv := append([]string{tn.opts.Weft, "server",
		"--listen", fmt.Sprintf(":%d", tn.opts.Port),
		"--data-dir", tn.dataDir,
		"--server-url", tn.ServerURL}, tn.opts.ServerArgs...)
	if tn.opts.TLSCert != "" {
		argv = append(argv, "--tls-cert", tn.opts.TLSCert, "--tls-key", tn.opts.TLSKey)
	}
	if a := srv.Addr6(); a.IsValid() && !slices.ContainsFunc(tn.opts.ServerArgs, func(s string) bool { return strings.HasPrefix(s, "--relay-map") }) {
		// The default relay map names the server's IPv4 address; its
		// IPv6 one goes beside it so dual-stack and IPv6-only nodes
		// reach the relay and STUN over IPv6.
		argv = append(argv, "--relay-addrs", a.String())
	}
	p, err := srv.Start(ctx, "server", argv...)
	if err != nil {
		return fmt.Errorf("scenario: start server: %w", err)
	}
	tn.mu.Lock()
	tn.server = p
	tn.mu.Unlock()
	client, err := tn.healthClient(srv)
	if err != nil {
		return err
	}
	err = WaitFor(ctx, 20*time.Second, "control server /healthz", func() (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("server exited: %s", Tail(p.Logs(), 15))
		}
		resp, err := client.Get(tn.ServerURL + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	tn.log.Info("control server up", "url", tn.ServerURL)
	return nil
}

// healthClient is StartServer's client for /healthz on srv: it trusts
// Options.CAFile, as read now, besides the system's roots.
func (tn *Tailnet) healthClient(srv *netlab.Node) (*http.Client, error) {
	client := srv.HTTPClient()
	if tn.opts.CAFile == "" {
		return client, nil
	}
	ca, err := os.ReadFile(tn.opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	tc, err := netutil.TrustTLS(ca)
	if err != nil {
		return nil, fmt.Errorf("scenario: %s: %w", tn.opts.CAFile, err)
	}
	client.Transport.(*http.Transport).TLSClientConfig = tc
	return client, nil
}

// KillServer stops the control server with SIGKILL, as a crash would.
func (tn *Tailnet) KillServer() error {
	tn.mu.Lock()
	p := tn.server
	tn.mu.Unlock()
	if p == nil {
		return errors.New("scenario: no server running")
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("scenario: kill server: %w", err)
	}
	_ = p.Wait() // reaped; its exit status is the kill
	return nil
}

// KillDaemon stops host's daemon with SIGKILL, as a crash or power cut
// would.
func (tn *Tailnet) KillDaemon(host string) error {
	p := tn.Daemon(host)
	if p == nil {
		return fmt.Errorf("scenario: no daemon on %s", host)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("scenario: kill daemon on %s: %w", host, err)
	}
	_ = p.Wait()
	return nil
}

// RestartDaemonAfterKill kills host's daemon with SIGKILL and starts it
// again over what the crash left (its state and its stale socket), as a
// node that lost power and booted again would.
func (tn *Tailnet) RestartDaemonAfterKill(ctx context.Context, host string) error {
	if err := tn.KillDaemon(host); err != nil {
		return err
	}
	return tn.StartDaemon(ctx, host)
}

// Server returns the control server's process.
func (tn *Tailnet) Server() *netlab.Process {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.server
}

// Daemon returns the daemon process on host, or nil.
func (tn *Tailnet) Daemon(host string) *netlab.Process {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.daemons[host]
}

// DataDir is the control server's data directory (its key, admin socket
// and, without --db, its database).
func (tn *Tailnet) DataDir() string { return tn.dataDir }

// StateDir is the daemon's state directory on host.
func (tn *Tailnet) StateDir(host string) string {
	return filepath.Join(tn.Lab.Dir(), "nodes", host)
}

// Socket is the daemon's local API socket on host.
func (tn *Tailnet) Socket(host string) string {
	return filepath.Join(tn.StateDir(host), "weft.sock")
}

// StartDaemon starts (or restarts) the daemon on host and waits for its
// socket.
func (tn *Tailnet) StartDaemon(ctx context.Context, host string) error {
	n, err := tn.node(host)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(tn.StateDir(host), 0o700); err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	argv := append([]string{tn.opts.Weft, "daemon",
		"--state-dir", tn.StateDir(host),
		"--socket", tn.Socket(host)}, tn.opts.DaemonArgs...)
	if tn.opts.DaemonArgv != nil {
		argv = tn.opts.DaemonArgv(host, argv)
	}
	p, err := n.Start(ctx, "daemon", argv...)
	if err != nil {
		return fmt.Errorf("scenario: start daemon on %s: %w", host, err)
	}
	tn.mu.Lock()
	tn.daemons[host] = p
	tn.mu.Unlock()
	// Wait for the socket to accept, not merely to exist: a daemon killed
	// with SIGKILL leaves its socket file behind.
	err = WaitFor(ctx, 15*time.Second, "daemon socket on "+host, func() (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("daemon on %s exited: %s", host, Tail(p.Logs(), 15))
		}
		c, err := net.DialTimeout("unix", tn.Socket(host), time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	return nil
}

// ServerURLFor is the server URL host uses: ServerURL6 on a host without
// IPv4 (an IPv6-only site), ServerURL otherwise.
func (tn *Tailnet) ServerURLFor(host string) string {
	if n := tn.Lab.Node(host); n != nil && n.Addr().Is6() && tn.ServerURL6 != "" {
		return tn.ServerURL6
	}
	return tn.ServerURL
}

// Up runs `weft up` on host with the tailnet's server and key.
func (tn *Tailnet) Up(ctx context.Context, host string, extra ...string) error {
	args := []string{"up", "--server", tn.ServerURLFor(host), "--auth-key", tn.AuthKey, "--hostname", host}
	if tn.opts.CAFile != "" {
		args = append(args, "--ca-file", tn.opts.CAFile)
	}
	args = append(args, extra...)
	if _, err := tn.CLI(ctx, host, args...); err != nil {
		return err
	}
	tn.log.Info("node up", "host", host)
	return nil
}

// CLI runs `weft --socket <host's socket> args...` inside host's namespace
// and returns its combined output.
func (tn *Tailnet) CLI(ctx context.Context, host string, args ...string) ([]byte, error) {
	n, err := tn.node(host)
	if err != nil {
		return nil, err
	}
	argv := append([]string{tn.opts.Weft, "--socket", tn.Socket(host)}, args...)
	out, err := n.Exec(ctx, argv...)
	if err != nil {
		return out, fmt.Errorf("scenario: weft %s on %s: %w: %s", strings.Join(args, " "), host, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Status runs `weft status --json` on host and decodes what it prints.
func (tn *Tailnet) Status(ctx context.Context, host string) (*localapi.Status, error) {
	out, err := tn.CLI(ctx, host, "status", "--json")
	if err != nil {
		return nil, err
	}
	var st localapi.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("status --json on %s: %w: %s", host, err, out)
	}
	return &st, nil
}

// Admin runs `weft admin --data-dir <server data> args...` on the server's
// host and returns its standard output.
func (tn *Tailnet) Admin(ctx context.Context, args ...string) ([]byte, error) {
	n, err := tn.node(tn.opts.Server)
	if err != nil {
		return nil, err
	}
	argv := append([]string{tn.opts.Weft, "admin", "--data-dir", tn.dataDir}, args...)
	out, err := n.Exec(ctx, argv...)
	if err != nil {
		return out, fmt.Errorf("scenario: weft admin %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Whoami asks the seed topology's web host, from host, which address its
// request came from: the public address host's traffic leaves by (its
// router's WAN, or an exit node's). ctx bounds the request.
func Whoami(ctx context.Context, lab *netlab.Lab, host string) (netip.Addr, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lab.Node("web").WANAddr.String()+"/", nil)
	if err != nil {
		return netip.Addr{}, err
	}
	resp, err := lab.Node(host).HTTPClient().Do(req)
	if err != nil {
		return netip.Addr{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(strings.TrimSpace(string(b)))
}

// WaitFor polls cond every 100ms until it reports true, returns an error,
// or timeout passes. The error names what was awaited.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: gave up after %v", what, timeout)
		case <-t.C:
		}
	}
}

// Tail returns the last n lines of a log, for error messages and for
// what a failed test prints.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogTails returns the last n lines of the server's log and of each
// daemon's, hosts in name order, for a test to print when it failed.
func (tn *Tailnet) LogTails(n int) string {
	tn.mu.Lock()
	server, daemons := tn.server, maps.Clone(tn.daemons)
	tn.mu.Unlock()
	var b strings.Builder
	if server != nil {
		fmt.Fprintf(&b, "server:\n%s\n", Tail(server.Logs(), n))
	}
	for _, h := range slices.Sorted(maps.Keys(daemons)) {
		fmt.Fprintf(&b, "daemon on %s:\n%s\n", h, Tail(daemons[h].Logs(), n))
	}
	return b.String()
}

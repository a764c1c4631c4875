// Package pgtest starts a real, throw-away PostgreSQL for tests.
//
// Tests of weft's PostgreSQL store (and of several servers sharing one
// database) must run against the real server, not a fake: unique
// constraints, serialization failures and LISTEN/NOTIFY are what they test.
// pgtest runs Debian's server binaries (/usr/lib/postgresql/N/bin, the
// highest N found) on a fresh data directory under the system temp
// directory, listening on a unix socket in that directory and, when asked,
// on 127.0.0.1 at a free port — never on any other address.
//
// PostgreSQL refuses to run as root. When the test runs as root, pgtest runs
// initdb and postgres as the unprivileged user "nobody" (present on every
// Debian system, so no user is created) and hands the data directory to it;
// otherwise it runs them as the current user. The server is stopped by its
// PID and its directory removed when the test (or, with Main, the test
// package) ends, also when the test fails. When the binaries are missing,
// tests skip with a message naming the package to install.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SuperUser is the name of the superuser initdb creates; URLs returned by
// pgtest connect as it (authentication is "trust": only local clients reach
// the socket and only 127.0.0.1 the TCP port).
const SuperUser = "weft"

// Options tunes a server. The zero value listens on the unix socket only.
type Options struct {
	// TCP also listens on 127.0.0.1 at a free port (the same port across
	// Restart), for clients that cannot use a unix socket.
	TCP bool
	// Durable keeps PostgreSQL's defaults: every commit waits for its WAL
	// to be flushed to disk (fsync, synchronous_commit, full_page_writes
	// on). Off, the server skips those to start and commit fast, which
	// tests want; benchmarks that compare commit costs with SQLite (which
	// weft runs with synchronous=FULL) want them on.
	Durable bool
}

// Server is one running (or stopped) PostgreSQL cluster owned by a test.
// Its methods are safe for concurrent use.
type Server struct {
	binDir  string
	baseDir string // removed by Close; holds data/, sock/ and postgres.log
	dataDir string
	sockDir string
	logPath string
	port    int
	tcp     bool
	durable bool
	cred    *owner // nil: run as the current user

	// mu guards cmd, exited and dbSeq.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	dbSeq  int
}

// owner is the user PostgreSQL runs as.
type owner struct{ uid, gid int }

// ErrNoBinaries is returned by New when no PostgreSQL server binaries are
// installed.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install Debian's postgresql package (apt-get install postgresql)")

// BinDir returns the directory of the newest installed PostgreSQL server
// binaries, or ErrNoBinaries. $WEFT_PGTEST_BINDIR, when set, is the only
// directory looked at (for PostgreSQL installed elsewhere).
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	if d := os.Getenv("WEFT_PGTEST_BINDIR"); d != "" {
		dirs = []string{d}
	}
	var found []string
	for _, d := range dirs {
		if hasServerBinaries(d) {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", ErrNoBinaries
	}
	sort.Slice(found, func(i, j int) bool { return versionOf(found[i]) < versionOf(found[j]) })
	return found[len(found)-1], nil
}

// hasServerBinaries reports whether dir holds initdb, postgres and psql.
func hasServerBinaries(dir string) bool {
	for _, b := range []string{"initdb", "postgres", "psql"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

// versionOf returns N of /usr/lib/postgresql/N/bin (0 if it is no number).
func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start starts a PostgreSQL for t and stops it (by PID) and removes its
// files when t ends. It skips t when the binaries are missing and fails t
// when the server cannot start.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if errors.Is(err, ErrNoBinaries) {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// New initialises a cluster in a fresh temporary directory and starts it.
// The caller must Close it. Tests use Start or NewDB instead.
func New(opts Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "weft-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	s := &Server{
		binDir: bin, baseDir: base, cred: cred, tcp: opts.TCP, durable: opts.Durable, port: 5432,
		dataDir: filepath.Join(base, "data"),
		sockDir: filepath.Join(base, "sock"),
		logPath: filepath.Join(base, "postgres.log"),
	}
	if err := s.setup(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	if err := s.Start(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	return s, nil
}

// setup makes the directories, hands them to the server's user, picks the
// port and runs initdb.
func (s *Server) setup() error {
	for _, d := range []string{s.dataDir, s.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	if s.cred != nil {
		// The base directory stays root's but must be traversable by the
		// server's user (os.MkdirTemp makes it 0700).
		if err := os.Chmod(s.baseDir, 0o711); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		for _, p := range []string{s.dataDir, s.sockDir} {
			if err := os.Chown(p, s.cred.uid, s.cred.gid); err != nil {
				return fmt.Errorf("pgtest: hand %s to uid %d: %w", p, s.cred.uid, err)
			}
		}
		if err := checkTraversable(s.baseDir); err != nil {
			return err
		}
	}
	if s.tcp {
		p, err := freePort()
		if err != nil {
			return err
		}
		s.port = p
	}
	cmd := exec.Command(filepath.Join(s.binDir, "initdb"),
		"-D", s.dataDir, "-U", SuperUser, "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.Dir = s.baseDir
	cmd.Env = s.env()
	cmd.SysProcAttr = sysProcAttr(s.cred)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	return nil
}

// checkTraversable fails clearly when a parent of dir is closed to others,
// which happens when $TMPDIR is under a private home directory.
func checkTraversable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pgtest: %s is not traversable by the unprivileged PostgreSQL user; set TMPDIR to a directory such as /tmp", d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// env is the environment of initdb, postgres and psql: the C locale and
// nothing of the test's own PG* settings.
func (s *Server) env() []string {
	return []string{"PATH=" + s.binDir + ":/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
}

// Start starts the stopped server and waits until it accepts connections.
// It is an error to start a running server.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: Start: already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	listen := ""
	if s.tcp {
		listen = "127.0.0.1"
	}
	args := []string{"-D", s.dataDir, "-k", s.sockDir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=" + listen, "-c", "max_connections=300", "-c", "shared_buffers=32MB"}
	if !s.durable {
		// A test cluster need not survive a machine crash; these make
		// it start and commit fast.
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	}
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"), args...)
	cmd.Dir = s.baseDir
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr(s.cred)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	if err := s.waitReadyLocked(cmd.Process.Pid, exited); err != nil {
		s.stopLocked(syscall.SIGKILL)
		return err
	}
	return nil
}

// waitReadyLocked polls postmaster.pid until the server with this PID says
// "ready", which is after recovery, so the first connection succeeds. (A
// killed server leaves its own file behind, ready and all.)
func (s *Server) waitReadyLocked(pid int, exited <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited while starting:\n%s", s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid"))
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) > 7 && strings.TrimSpace(lines[0]) == strconv.Itoa(pid) && strings.TrimSpace(lines[7]) == "ready" {
			return nil
		}
	}
	return fmt.Errorf("pgtest: postgres not ready after 60s:\n%s", s.logTail())
}

// Stop shuts the server down (fast shutdown: clients are disconnected,
// data is kept) and waits for it to exit. Stopping a stopped server is a
// no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGINT)
}

// Kill ends the server with SIGKILL, as a crash would; Start then runs
// crash recovery.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGKILL)
}

// Restart stops and starts the server; URLs stay valid.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// stopLocked signals the postmaster by PID and waits for it; after 30 s of
// a graceful shutdown it kills it.
func (s *Server) stopLocked(sig syscall.Signal) error {
	if s.cmd == nil {
		return nil
	}
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	if sig == syscall.SIGKILL {
		// Backends notice their postmaster's death and exit; wait until
		// they have let go of shared memory so that a new postmaster can
		// start on this data directory.
		s.waitBackendsGone()
	}
	return nil
}

// waitBackendsGone waits (bounded) until no process runs with the data
// directory as its working directory, i.e. all backends have exited.
func (s *Server) waitBackendsGone() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && anyProcessIn(s.dataDir) {
		time.Sleep(20 * time.Millisecond)
	}
}

// Running reports whether the server is started.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// PID returns the postmaster's process ID, or 0 when stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	err := s.Stop()
	if rerr := os.RemoveAll(s.baseDir); rerr != nil && err == nil {
		err = fmt.Errorf("remove %s: %w", s.baseDir, rerr)
	}
	return err
}

// SocketDir is the directory holding the server's unix socket.
func (s *Server) SocketDir() string { return s.sockDir }

// Port is the server's port: the TCP port with Options.TCP, otherwise the
// number in the socket's file name.
func (s *Server) Port() int { return s.port }

// URL returns a libpq URL for database db over the unix socket, in the
// form postgres://weft@/DB?host=/tmp/.../sock&port=N.
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.sockDir}, "port": {strconv.Itoa(s.port)}}
	u := url.URL{Scheme: "postgres", User: url.User(SuperUser), Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// TCPURL returns a libpq URL for database db over 127.0.0.1, or "" when
// the server does not listen on TCP.
func (s *Server) TCPURL(db string) string {
	if !s.tcp {
		return ""
	}
	u := url.URL{Scheme: "postgres", User: url.User(SuperUser),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), Path: "/" + db,
		RawQuery: "sslmode=disable"}
	return u.String()
}

// nonIdent matches what may not appear in a generated database name.
var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// CreateDB creates a fresh database named after t and returns its URL; it
// is dropped when t ends. The server must be running.
func (s *Server) CreateDB(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.dbSeq++
	name := fmt.Sprintf("t%d_%s", s.dbSeq, nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"))
	s.mu.Unlock()
	if len(name) > 60 {
		name = name[:60]
	}
	if err := s.Exec(context.Background(), "postgres", `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.Running() {
			_ = s.Exec(context.Background(), "postgres", `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`)
		}
	})
	return s.URL(name)
}

// Exec runs SQL in database db with psql as the superuser and returns
// psql's error output on failure. It needs no Go driver, so pgtest stays
// usable by any package.
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	_, err := s.Query(ctx, db, sql)
	return err
}

// Query runs SQL in database db with psql and returns its unaligned,
// tuples-only output (fields separated by "|").
func (s *Server) Query(ctx context.Context, db, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "psql"), "-X", "-q", "-A", "-t",
		"-v", "ON_ERROR_STOP=1", "-h", s.sockDir, "-p", strconv.Itoa(s.port),
		"-U", SuperUser, "-d", db, "-c", sql)
	cmd.Env = s.env()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("pgtest: psql %q: %v: %s", sql, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// logTail returns the end of the server's log for error messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

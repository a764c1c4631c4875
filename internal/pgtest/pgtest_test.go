package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestServerLifecycle starts a server, uses a database over the socket and
// over TCP, restarts, stops, starts and crashes it, and checks that data
// survives each and that Close leaves no process or file behind.
func TestServerLifecycle(t *testing.T) {
	var srv *Server
	t.Run("run", func(t *testing.T) {
		srv = Start(t, Options{TCP: true})
		ctx := context.Background()
		url := srv.CreateDB(t)
		db := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
		mustExec(t, srv, db, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
		if !strings.HasPrefix(url, "postgres://weft@/") || !strings.Contains(url, "host=") {
			t.Errorf("URL = %q, want a unix-socket libpq URL", url)
		}
		if tu := srv.TCPURL(db); !strings.HasPrefix(tu, "postgres://weft@127.0.0.1:") {
			t.Errorf("TCPURL = %q, want 127.0.0.1", tu)
		}
		checkNotRoot(t, srv.PID())
		if got, err := srv.Query(ctx, db, "SHOW listen_addresses"); err != nil || got != "127.0.0.1" {
			t.Errorf("listen_addresses = %q, %v; want 127.0.0.1 only", got, err)
		}
		for _, step := range []struct {
			name string
			do   func() error
		}{
			{"restart", srv.Restart},
			{"stop-start", func() error {
				if err := srv.Stop(); err != nil {
					return err
				}
				if _, err := srv.Query(ctx, db, "SELECT 1"); err == nil {
					t.Error("query succeeded on a stopped server")
				}
				return srv.Start()
			}},
			{"kill-start", func() error {
				if err := srv.Kill(); err != nil {
					return err
				}
				return srv.Start()
			}},
		} {
			old := srv.PID()
			if err := step.do(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if srv.PID() == old || srv.PID() == 0 {
				t.Errorf("%s: PID %d → %d, want a new server", step.name, old, srv.PID())
			}
			if got, err := srv.Query(ctx, db, "SELECT count(*) FROM t"); err != nil || got != "1" {
				t.Errorf("after %s: count = %q, %v; want 1", step.name, got, err)
			}
		}
	})
	// The subtest's cleanup has run: the server and its files are gone.
	if srv == nil {
		return
	}
	if srv.Running() {
		t.Error("server still running after its test ended")
	}
	if _, err := os.Stat(srv.baseDir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after its test ended (err %v)", srv.baseDir, err)
	}
	if runtime.GOOS == "linux" && anyProcessIn(srv.dataDir) {
		t.Error("a PostgreSQL process outlived its test")
	}
}

func mustExec(t *testing.T, srv *Server, db, sql string) {
	t.Helper()
	if err := srv.Exec(context.Background(), db, sql); err != nil {
		t.Fatal(err)
	}
}

// checkNotRoot checks that the postmaster does not run as root.
func checkNotRoot(t *testing.T, pid int) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == "0" {
			t.Errorf("postgres runs as root")
		}
	}
}

// TestNewDBIsolated checks that two tests' databases do not see each
// other's tables.
func TestNewDBIsolated(t *testing.T) {
	srv := Start(t, Options{})
	a, b := srv.CreateDB(t), srv.CreateDB(t)
	if a == b {
		t.Fatalf("CreateDB returned %q twice", a)
	}
	dbName := func(u string) string { return u[strings.LastIndex(u, "/")+1 : strings.Index(u, "?")] }
	mustExec(t, srv, dbName(a), "CREATE TABLE only_in_a (v int)")
	if err := srv.Exec(context.Background(), dbName(b), "SELECT * FROM only_in_a"); err == nil {
		t.Error("database b sees database a's table")
	}
}

func TestMain(m *testing.M) { Main(m) }

// TestNewDBShared checks that under Main two NewDB calls get distinct
// databases on one shared server.
func TestNewDBShared(t *testing.T) {
	a, b := NewDB(t), NewDB(t)
	host := func(u string) string { return u[strings.Index(u, "?"):] }
	if a == b || host(a) != host(b) {
		t.Errorf("NewDB = %q and %q; want two databases on one server", a, b)
	}
}

// TestSkipsWithoutBinaries: with no PostgreSQL binaries, Start skips the
// test (it does not fail it) with a message naming the package. (NewDB
// without Main is Start; under Main it skips the same way unless the
// package's server already runs, as it does here.)
func TestSkipsWithoutBinaries(t *testing.T) {
	t.Setenv("WEFT_PGTEST_BINDIR", t.TempDir())
	if _, err := BinDir(); err != ErrNoBinaries {
		t.Fatalf("BinDir in an empty directory: %v, want ErrNoBinaries", err)
	}
	if !strings.Contains(ErrNoBinaries.Error(), "apt-get install postgresql") {
		t.Errorf("message %q does not name the package", ErrNoBinaries)
	}
	var sub *testing.T
	t.Run("Start", func(t *testing.T) {
		sub = t
		Start(t, Options{})
		t.Error("did not skip")
	})
	if !sub.Skipped() {
		t.Error("Start without binaries: not skipped")
	}
}

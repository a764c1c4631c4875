package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"weft/internal/wire"
)

// The child half of TestKill9LosesNothingCommitted: when these are set,
// TestKill9Child registers nodes until killed, printing each committed ID.
const (
	envChildDB  = "WEFT_STORE_KILL_CHILD_DB"
	envChildKey = "WEFT_STORE_KILL_CHILD_KEY"
)

func TestKill9Child(t *testing.T) {
	path, authKey := os.Getenv(envChildDB), os.Getenv(envChildKey)
	if path == "" {
		t.Skip("runs only as the child of TestKill9LosesNothingCommitted")
	}
	ctx := context.Background()
	s, err := Open(ctx, path, Options{})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		n, err := s.Register(ctx, newMachine().req(authKey, fmt.Sprintf("k%d", i)))
		if err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(1)
		}
		// Printed only after the commit returned: the parent may hold us
		// to every ID it reads.
		fmt.Printf("committed %d\n", n.ID)
	}
}

// TestKill9LosesNothingCommitted SIGKILLs a process that is registering
// nodes in a loop, at a random moment, then reopens the database: it must
// open cleanly and hold every node the child reported as committed.
func TestKill9LosesNothingCommitted(t *testing.T) {
	if os.Getenv(envChildDB) != "" {
		t.Skip("child process")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	authKey, _, err := s.CreateAuthKey(ctx, AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	var committed []wire.NodeID
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
		cmd.Env = append(os.Environ(), envChildDB+"="+path, envChildKey+"="+authKey)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of commits plus a random fraction
		// of a commit's time, so the kill lands anywhere in the loop.
		killAfter := 5 + rand.IntN(40)
		sc := bufio.NewScanner(out)
		lines := 0
		killed := false
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "error ") {
				t.Fatalf("round %d: child: %s", round, line)
			}
			idText, ok := strings.CutPrefix(line, "committed ")
			if !ok {
				continue // the test framework's own output
			}
			id, err := strconv.ParseUint(idText, 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", line)
			}
			committed = append(committed, wire.NodeID(id))
			lines++
			if lines == killAfter && !killed {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		// Lines the child wrote before dying are still read above, up to
		// EOF; Wait reaps it.
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child exited on its own: %v", round, err)
		}

		s, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		var check string
		if err := s.(*sqlStore).db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
			t.Fatalf("round %d: integrity_check = %q, %v", round, check, err)
		}
		for _, id := range committed {
			if _, err := s.GetNode(ctx, id); err != nil {
				t.Fatalf("round %d: node %d was committed before the kill but is gone: %v", round, id, err)
			}
		}
		s.Close()
		t.Logf("round %d: %d committed nodes survived", round, len(committed))
	}
}

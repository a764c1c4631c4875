package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/tstest"
)

// TestHelperWeftProcess is not a test: run as a child of the test binary
// with WEFT_HELPER_ARGS set, it is `weft` with those arguments, so that a
// test can kill a real weft process with SIGKILL.
func TestHelperWeftProcess(t *testing.T) {
	args := os.Getenv("WEFT_HELPER_ARGS")
	if args == "" {
		t.Skip("helper process for TestControlServerKill9DuringRegistrationStorm")
	}
	os.Exit(run(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
}

// weftProcess is `weft args...` as a child process, not yet started:
// the test binary running TestHelperWeftProcess.
func weftProcess(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWeftProcess$")
	cmd.Env = append(os.Environ(), "WEFT_HELPER_ARGS="+strings.Join(args, "\x1f"))
	return cmd
}

// startWeftProcess runs `weft args...` as a child process.
func startWeftProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := weftProcess(args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestControlServerKill9DuringRegistrationStorm is the standing case
// "control server kill -9 during a registration storm → no node, key or
// address lost or duplicated after restart": every registration the server
// confirmed survives with its ID and address, none is stored twice, and
// the ones cut off register cleanly afterwards.
func TestControlServerKill9DuringRegistrationStorm(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "server")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	url := "http://" + addr
	serverArgs := []string{"server", "--listen", addr, "--data-dir", dataDir, "--server-url", url, "--stun-listen=", "--register-rate", "-1"}
	srv := startWeftProcess(t, serverArgs...)
	awaitHealthz(t, url)
	admin := adminCLI(t, dataDir)
	admin("users", "create", "alice")
	authKey := admin("keys", "create", "--user", "alice", "--reusable")

	const storm = 40
	machines := make([]key.MachinePrivate, storm)
	confirmed := make([]string, storm) // "id addr" the server confirmed, or ""
	var done atomic.Int32
	register := func(i int) error {
		c, err := controlclient.New(controlclient.Options{ServerURL: url, MachineKey: machines[i], NodeKey: key.NewNode()})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n, err := c.Register(ctx, authKey, key.NodePublic{})
		if err != nil {
			return err
		}
		confirmed[i] = fmt.Sprint(n.ID, " ", n.Addresses[0].Addr())
		done.Add(1)
		return nil
	}
	var wg sync.WaitGroup
	for i := range machines {
		machines[i] = key.NewMachine()
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond) // a storm over ~1 s
			register(i)
		}()
	}
	// Killed in the middle of the storm.
	tstest.Eventually(t, "a quarter of the registrations confirmed", func() bool { return done.Load() >= storm/4 })
	srv.Process.Signal(syscall.SIGKILL)
	srv.Wait()
	wg.Wait()
	before := 0
	for _, c := range confirmed {
		if c != "" {
			before++
		}
	}
	t.Logf("%d of %d registrations confirmed before the kill", before, storm)

	startWeftProcess(t, serverArgs...)
	awaitHealthz(t, url)
	// The registrations cut off by the kill are simply tried again, as
	// `weft up` would be.
	for i := range machines {
		if confirmed[i] == "" {
			if err := register(i); err != nil {
				t.Fatalf("registration %d after the restart: %v", i, err)
			}
		}
	}
	var nodes []adminapi.Node
	if err := json.Unmarshal([]byte(admin("nodes", "list", "--json")), &nodes); err != nil {
		t.Fatal(err)
	}
	byMachine := map[key.MachinePublic]adminapi.Node{}
	seenAddr, seenName := map[string]bool{}, map[string]bool{}
	for _, n := range nodes {
		if _, dup := byMachine[n.MachineKey]; dup || seenAddr[n.IPv4.String()] || seenName[n.Name] {
			t.Errorf("duplicated after the restart: %+v", n)
		}
		byMachine[n.MachineKey], seenAddr[n.IPv4.String()], seenName[n.Name] = n, true, true
	}
	if len(nodes) != storm {
		t.Errorf("%d nodes stored, want %d", len(nodes), storm)
	}
	for i, m := range machines {
		n, ok := byMachine[m.Public()]
		if !ok {
			t.Errorf("machine %d lost", i)
			continue
		}
		if got := fmt.Sprint(n.ID, " ", n.IPv4); got != confirmed[i] {
			t.Errorf("machine %d: stored as %s, confirmed as %s", i, got, confirmed[i])
		}
	}
}

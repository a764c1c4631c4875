package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConsoleLinksAndSessions: a login link made through one handle is
// spent through another (as at a second server on the database), once,
// starting a session of the server's administrator in the same
// transaction as its audit entry; a session started through one handle
// is live through the other, follows its user's role, and ends for both
// when signed out at one; expired links and sessions are refused and
// swept; a deleted user's sessions end.
func TestConsoleLinksAndSessions(t *testing.T) { forEachStore(t, testConsoleLinksAndSessions) }

func testConsoleLinksAndSessions(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	other := f.second()
	now := f.clock.Now
	if err := f.s.CreateConsoleLink(ctx, "l0", now()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a link expiring now: %v; want ErrInvalid", err)
	}
	if err := f.s.CreateConsoleLink(ctx, "l1", now().Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	audited := WithAudit(ctx, AuditEntry{Credential: "login link", Remote: "192.0.2.1", Action: "console.signin"})
	cs, err := other.UseConsoleLink(audited, "l1", ConsoleSessionStart{Hash: "s1", Expires: now().Add(time.Hour)})
	if err != nil || cs.User != "" || cs.Role != RoleAdmin || !cs.Expires.Equal(now().Add(time.Hour)) {
		t.Fatalf("spending the link at the other handle: %+v %v", cs, err)
	}
	if es, _ := f.s.ListAudit(ctx, AuditQuery{}); !AuditRecorded(audited) || len(es) != 1 || es[0].Action != "console.signin" {
		t.Fatalf("audit log after a sign-in: %+v", es)
	}
	again := WithAudit(ctx, AuditEntry{Action: "console.signin"})
	if _, err := f.s.UseConsoleLink(again, "l1", ConsoleSessionStart{Hash: "s2", Expires: now().Add(time.Hour)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a spent link again: %v; want ErrNotFound", err)
	}
	if es, _ := f.s.ListAudit(ctx, AuditQuery{}); AuditRecorded(again) || len(es) != 1 {
		t.Fatalf("a refused sign-in was audited: %+v", es)
	}
	if _, err := f.s.CheckConsoleSession(ctx, "s2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused link started a session: %v", err)
	}
	got, err := f.s.CheckConsoleSession(ctx, "s1")
	if err != nil || got.Role != RoleAdmin || got.User != "" {
		t.Fatalf("the link's session at the first handle: %+v %v", got, err)
	}

	// A user's session follows the user's role and ends with the user.
	if _, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: "x", User: "nobody", Expires: now().Add(time.Hour)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a session of an unknown user: %v", err)
	}
	if cs, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: "a1", User: "alice", Expires: now().Add(time.Hour)}); err != nil || cs.User != "alice" || cs.Role != RoleMember {
		t.Fatalf("alice's session: %+v %v", cs, err)
	}
	if _, err := f.s.SetUserRole(ctx, "alice", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if got, err := other.CheckConsoleSession(ctx, "a1"); err != nil || got.User != "alice" || got.Role != RoleAdmin {
		t.Fatalf("alice's session after she was made admin, at the other handle: %+v %v", got, err)
	}

	// Last use is recorded at most once a minute.
	f.clock.Advance(30 * time.Second)
	if got, _ := f.s.CheckConsoleSession(ctx, "a1"); !got.LastSeen.Equal(got.Created) {
		t.Fatalf("last seen moved within a minute: %+v", got)
	}
	f.clock.Advance(time.Minute)
	if got, _ := f.s.CheckConsoleSession(ctx, "a1"); !got.LastSeen.Equal(now()) {
		t.Fatalf("last seen %v after a minute; want %v", got.LastSeen, now())
	}
	if got, _ := other.CheckConsoleSession(ctx, "a1"); !got.LastSeen.Equal(now()) {
		t.Fatalf("last seen %v at the other handle; want %v", got.LastSeen, now())
	}

	// Signing out at one handle ends the session at both, once, audited.
	out := WithAudit(ctx, AuditEntry{Action: "console.signout"})
	if err := other.EndConsoleSession(out, "s1"); err != nil || !AuditRecorded(out) {
		t.Fatalf("sign-out: %v, audited %v", err, AuditRecorded(out))
	}
	if _, err := f.s.CheckConsoleSession(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session after sign-out at the other handle: %v", err)
	}
	twice := WithAudit(ctx, AuditEntry{Action: "console.signout"})
	if err := f.s.EndConsoleSession(twice, "s1"); !errors.Is(err, ErrNotFound) || AuditRecorded(twice) {
		t.Fatalf("second sign-out: %v, audited %v", err, AuditRecorded(twice))
	}

	// Deleting a user ends their sessions.
	if _, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: "b1", User: "bob", Expires: now().Add(time.Hour)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob does not exist yet: %v", err)
	}
	f.user("bob")
	if _, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: "b1", User: "bob", Expires: now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.CheckConsoleSession(ctx, "b1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted user's session: %v", err)
	}

	// Expiry: links and sessions past it are refused, then swept.
	if err := f.s.CreateConsoleLink(ctx, "l2", now().Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if _, err := other.CheckConsoleSession(ctx, "a1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an expired session: %v", err)
	}
	if _, err := other.UseConsoleLink(ctx, "l2", ConsoleSessionStart{Hash: "s3", Expires: now().Add(time.Hour)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an expired link: %v", err)
	}
	if err := f.s.CreateConsoleLink(ctx, "l3", now().Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: "a2", User: "alice", Expires: now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var links, sessions int
	q := f.s.(*sqlStore).direct()
	if err := q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM console_links), (SELECT COUNT(*) FROM console_sessions)`).Scan(&links, &sessions); err != nil {
		t.Fatal(err)
	}
	if links != 1 || sessions != 1 {
		t.Fatalf("%d links and %d sessions after new ones past every expiry; want 1 and 1", links, sessions)
	}
}

// TestConsoleLinkSpentOnce: many requests through two handles (as two
// servers) present one login link at once; exactly one starts a session.
func TestConsoleLinkSpentOnce(t *testing.T) { forEachStore(t, testConsoleLinkSpentOnce) }

func testConsoleLinkSpentOnce(t *testing.T, f *fixture) {
	ctx := context.Background()
	other := f.second()
	if err := f.s.CreateConsoleLink(ctx, "link", f.clock.Now().Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	const tries = 20
	handles := []Store{f.s, other}
	errs := make([]error, tries)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = handles[i%2].UseConsoleLink(ctx, "link",
				ConsoleSessionStart{Hash: fmt.Sprint("s", i), Expires: f.clock.Now().Add(time.Hour)})
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrNotFound):
			t.Errorf("try %d: %v; want success or ErrNotFound", i, err)
		}
	}
	var sessions int
	if err := f.s.(*sqlStore).direct().QueryRowContext(ctx, `SELECT COUNT(*) FROM console_sessions`).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if won != 1 || sessions != 1 {
		t.Fatalf("%d of %d tries spent the link, %d sessions; want exactly 1", won, tries, sessions)
	}
}

// TestOIDCFlows: a sign-in started through one handle is finished
// through another (the provider's redirect reached another server),
// once; an expired one is refused and swept; the bound on sign-ins in
// progress holds.
func TestOIDCFlows(t *testing.T) { forEachStore(t, testOIDCFlows) }

func testOIDCFlows(t *testing.T, f *fixture) {
	ctx := context.Background()
	other := f.second()
	flow := func(state string) OIDCFlow {
		return OIDCFlow{StateHash: state, Purpose: "node", Data: "code-" + state, Expires: f.clock.Now().Add(10 * time.Minute)}
	}
	if err := f.s.StartOIDCFlow(ctx, OIDCFlow{StateHash: "x", Expires: f.clock.Now()}, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a flow expiring now: %v; want ErrInvalid", err)
	}
	for _, st := range []string{"s1", "s2"} {
		if err := f.s.StartOIDCFlow(ctx, flow(st), 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.StartOIDCFlow(ctx, flow("s3"), 2); !errors.Is(err, ErrTooManyFlows) {
		t.Fatalf("a third flow with a bound of 2: %v; want ErrTooManyFlows", err)
	}
	got, err := other.TakeOIDCFlow(ctx, "s1")
	if err != nil || got.Purpose != "node" || got.Data != "code-s1" || got.StateHash != "s1" {
		t.Fatalf("finishing at the other handle: %+v %v", got, err)
	}
	if _, err := f.s.TakeOIDCFlow(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finishing twice: %v; want ErrNotFound", err)
	}
	f.clock.Advance(10 * time.Minute)
	if _, err := f.s.TakeOIDCFlow(ctx, "s2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an expired flow: %v; want ErrNotFound", err)
	}
	for _, st := range []string{"s4", "s5"} { // s2 is swept, so two fit
		if err := other.StartOIDCFlow(ctx, flow(st), 2); err != nil {
			t.Fatalf("%s after the others expired: %v", st, err)
		}
	}
}

// TestConsoleSessionSlides: a sliding session used is extended to its
// use + Idle (written with last_seen, at most once a minute, and seen at
// another handle), never past its absolute end; one not used within Idle
// ends; one started without Idle is never extended.
func TestConsoleSessionSlides(t *testing.T) { forEachStore(t, testConsoleSessionSlides) }

func testConsoleSessionSlides(t *testing.T, f *fixture) {
	ctx := context.Background()
	other := f.second()
	now := f.clock.Now
	start := now()
	if _, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: "bad", Expires: start.Add(time.Hour), Idle: time.Hour, MaxExpires: start.Add(time.Minute)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an absolute end before the expiry: %v; want ErrInvalid", err)
	}
	for _, h := range []string{"slide", "idle"} {
		if _, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: h, Expires: start.Add(time.Hour), Idle: time.Hour, MaxExpires: start.Add(3 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.StartConsoleSession(ctx, ConsoleSessionStart{Hash: "fixed", Expires: start.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Used every 50 minutes: extended each time, up to the absolute end.
	for i := 1; ; i++ {
		f.clock.Advance(50 * time.Minute)
		want := now().Add(time.Hour)
		if end := start.Add(3 * time.Hour); want.After(end) {
			want = end
		}
		got, err := f.s.CheckConsoleSession(ctx, "slide")
		if !now().Before(start.Add(3 * time.Hour)) {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("use %d, at %v past the absolute end: %+v %v; want ErrNotFound", i, now().Sub(start), got, err)
			}
			break
		}
		if err != nil || !got.Expires.Equal(want) || !got.LastSeen.Equal(now()) {
			t.Fatalf("use %d at %v: %+v %v; want expiry %v", i, now().Sub(start), got, err, want)
		}
		if at, err := other.CheckConsoleSession(ctx, "slide"); err != nil || !at.Expires.Equal(want) {
			t.Fatalf("use %d at the other handle: %+v %v", i, at, err)
		}
		// Within the minute: no write, the expiry stays.
		f.clock.Advance(30 * time.Second)
		if again, err := f.s.CheckConsoleSession(ctx, "slide"); err != nil || !again.Expires.Equal(want) || !again.LastSeen.Equal(got.LastSeen) {
			t.Fatalf("use %d again within a minute: %+v %v; want nothing written", i, again, err)
		}
		f.clock.Advance(-30 * time.Second)
		if i == 1 {
			if fixed, err := f.s.CheckConsoleSession(ctx, "fixed"); err != nil || !fixed.Expires.Equal(start.Add(time.Hour)) {
				t.Fatalf("a session without Idle, used: %+v %v; want it never extended", fixed, err)
			}
		}
		if i > 10 {
			t.Fatal("the session never reached its absolute end")
		}
	}
	for _, h := range []string{"idle", "fixed"} {
		if got, err := f.s.CheckConsoleSession(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session %s, unused for hours: %+v %v; want ErrNotFound", h, got, err)
		}
	}
}

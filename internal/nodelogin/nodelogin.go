// Package nodelogin is interactive node login: `weft up` without a
// pre-auth key asks the server for a login, prints its URL and waits; a
// person opens the URL and signs in with the tailnet's identity provider,
// or an administrator approves the login (`weft admin nodes approve`, or
// the console); the waiting `weft up` then receives a fresh one-off
// pre-auth key for that person's user and joins with it.
//
// A login has two secrets: the code in the URL, which the person and the
// administrator see, and the poll token, which only the waiting `weft up`
// holds; the key goes only to the poll token's holder, so someone who sees
// the URL cannot take the node's place. A code is good for one approval
// within Lifetime.
//
// Logins are kept in the store (store.NodeLogin), so that every server on
// one database shares them: a login started at server A can be approved
// at server B (the console, `weft admin`, the identity provider's
// callback), and the node waiting at A — or at C, after its connection
// moved — receives its key. An approval wakes the waiters of its own
// server at once and, through Announce (the change feed's "login"
// event), those of the other servers, which then re-read their logins'
// rows. Without the event a waiting node still learns of it at its next
// wait request, at most WaitTimeout later.
package nodelogin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"weft/internal/store"
)

// Lifetime is how long a login URL can be approved.
const Lifetime = 10 * time.Minute

// Bounds on pending logins, which anyone who can reach the server can
// start: in all, and from one address.
const (
	MaxPending        = 1000
	MaxPendingPerAddr = 10
)

// Errors of the Manager.
var (
	// ErrUnknown: no pending login has that code or poll token (never
	// was, already approved, or expired).
	ErrUnknown = errors.New("nodelogin: no such login: unknown, used or expired")
	// ErrTooMany: too many logins are pending.
	ErrTooMany = errors.New("nodelogin: too many logins pending; try again in a few minutes")
)

// Login is a pending login as administrators see it.
type Login struct {
	Code     string    `json:"code"`
	Hostname string    `json:"hostname"` // what the node said it is called
	Remote   string    `json:"remote"`   // the address it asked from
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
}

func fromStore(l store.NodeLogin) Login {
	return Login{Code: l.Code, Hostname: l.Hostname, Remote: l.Remote, Created: l.Created, Expires: l.Expires}
}

// Grant is what the waiting node receives once its login is approved.
type Grant struct {
	AuthKey string `json:"auth_key"` // a one-off pre-auth key, short-lived
	User    string `json:"user"`
}

// Store is the part of store.Store logins live in.
type Store interface {
	StartNodeLogin(ctx context.Context, req store.NodeLoginStart) (store.NodeLogin, error)
	PendingNodeLogins(ctx context.Context) ([]store.NodeLogin, error)
	GetNodeLogin(ctx context.Context, code string) (store.NodeLogin, error)
	ApproveNodeLogin(ctx context.Context, code, user string) (store.NodeLogin, error)
	TakeNodeLogin(ctx context.Context, pollHash string, keyExpiry time.Time) (store.NodeLoginGrant, error)
}

// Manager starts, approves and waits for logins kept in a Store. Make it
// with New; set Now and Announce before its first use.
type Manager struct {
	st Store
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Announce tells the other servers on the database that a login was
	// approved (control.Server.AnnounceLogin); nil tells nobody, and
	// their waiting nodes learn of it at their next wait request.
	Announce func()

	mu      sync.Mutex                 // guards waiters
	waiters map[chan struct{}]struct{} // each Wait's wake-up channel
}

// New returns a Manager whose logins live in st.
func New(st Store) *Manager {
	return &Manager{st: st, waiters: map[chan struct{}]struct{}{}}
}

func (m *Manager) now() time.Time {
	if m.Now == nil {
		return time.Now()
	}
	return m.Now()
}

func random(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nodelogin: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Start begins a login for a node that calls itself hostname, asking
// from remote (its address without port), and returns the login and its
// poll token.
func (m *Manager) Start(ctx context.Context, hostname, remote string) (Login, string, error) {
	code, err := random(15) // 120 bits: not guessable within Lifetime
	if err != nil {
		return Login{}, "", err
	}
	poll, err := random(32)
	if err != nil {
		return Login{}, "", err
	}
	l, err := m.st.StartNodeLogin(ctx, store.NodeLoginStart{Code: code, PollHash: hash(poll), Hostname: hostname,
		Remote: remote, Expires: m.now().Add(Lifetime), MaxPending: MaxPending, MaxPerRemote: MaxPendingPerAddr})
	if errors.Is(err, store.ErrTooManyLogins) {
		return Login{}, "", ErrTooMany
	}
	if err != nil {
		return Login{}, "", fmt.Errorf("nodelogin: %w", err)
	}
	return fromStore(l), poll, nil
}

// Pending lists logins waiting for approval, oldest first.
func (m *Manager) Pending(ctx context.Context) ([]Login, error) {
	ls, err := m.st.PendingNodeLogins(ctx)
	if err != nil {
		return nil, fmt.Errorf("nodelogin: %w", err)
	}
	out := make([]Login, 0, len(ls))
	for _, l := range ls {
		out = append(out, fromStore(l))
	}
	return out, nil
}

// Lookup returns the pending login with this code.
func (m *Manager) Lookup(ctx context.Context, code string) (Login, error) {
	l, err := m.st.GetNodeLogin(ctx, code)
	if errors.Is(err, store.ErrNotFound) {
		return Login{}, ErrUnknown
	}
	if err != nil {
		return Login{}, fmt.Errorf("nodelogin: %w", err)
	}
	return fromStore(l), nil
}

// Approve lets the login with this code join as user: its waiting node
// receives a one-off pre-auth key of user. A code is approved at most
// once; a second approval, or one after expiry, is ErrUnknown; an unknown
// user is the store's ErrNotFound. An audit entry in ctx
// (store.WithAudit) is recorded in the approval's transaction.
func (m *Manager) Approve(ctx context.Context, code, user string) (Login, error) {
	l, err := m.st.ApproveNodeLogin(ctx, code, user)
	if err != nil {
		// An unknown user and an unknown code are both ErrNotFound:
		// tell them apart by asking for the code.
		if _, lerr := m.st.GetNodeLogin(ctx, code); errors.Is(lerr, store.ErrNotFound) {
			return Login{}, ErrUnknown
		}
		return Login{}, fmt.Errorf("nodelogin: %w", err)
	}
	m.Wake()
	if m.Announce != nil {
		m.Announce()
	}
	return fromStore(l), nil
}

// Wake makes every Wait of this Manager read its login again: a login
// was approved here or, as the change feed says, at another server.
func (m *Manager) Wake() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Waiting reports how many Waits are in progress.
func (m *Manager) Waiting() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.waiters)
}

// Wait blocks until the login of this poll token is approved, ctx ends
// (ctx's error), or the login is unknown or expires (ErrUnknown). It reads
// the login's row once, and again each time Wake says a login was
// approved; never in a loop of its own. A grant is handed out once: the
// login is gone after it.
func (m *Manager) Wait(ctx context.Context, poll string) (Grant, error) {
	h := hash(poll)
	wake := make(chan struct{}, 1)
	m.mu.Lock()
	m.waiters[wake] = struct{}{} // before the first read: an approval after it wakes us
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.waiters, wake)
		m.mu.Unlock()
	}()
	for {
		g, err := m.st.TakeNodeLogin(ctx, h, m.now().Add(Lifetime))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return Grant{}, ErrUnknown
		case err != nil && ctx.Err() != nil:
			return Grant{}, ctx.Err()
		case err != nil:
			return Grant{}, fmt.Errorf("nodelogin: %w", err)
		case g.AuthKey != "":
			return Grant{AuthKey: g.AuthKey, User: g.Login.User}, nil
		}
		t := time.NewTimer(g.Login.Expires.Sub(m.now()))
		select {
		case <-wake:
		case <-t.C: // read once more: the store says it expired
		case <-ctx.Done():
			t.Stop()
			return Grant{}, ctx.Err()
		}
		t.Stop()
	}
}

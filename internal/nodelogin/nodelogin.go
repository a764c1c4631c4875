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
// within Lifetime. Logins are kept in the server's memory: a restart
// forgets pending ones, and `weft up` says to run it again.
package nodelogin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
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

// Grant is what the waiting node receives once its login is approved.
type Grant struct {
	AuthKey string `json:"auth_key"` // a one-off pre-auth key, short-lived
	User    string `json:"user"`
}

// Manager keeps pending logins. The zero value is not usable: use New.
type Manager struct {
	now func() time.Time

	mu     sync.Mutex
	byCode map[string]*entry // code → login
	byPoll map[string]*entry // SHA-256 of poll token → login
}

type entry struct {
	Login
	poll  string        // hash of the poll token
	grant *Grant        // set once approved
	done  chan struct{} // closed when approved
}

// New returns a Manager; now nil means time.Now.
func New(now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{now: now, byCode: map[string]*entry{}, byPoll: map[string]*entry{}}
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
func (m *Manager) Start(hostname, remote string) (Login, string, error) {
	code, err := random(15) // 120 bits: not guessable within Lifetime
	if err != nil {
		return Login{}, "", err
	}
	poll, err := random(32)
	if err != nil {
		return Login{}, "", err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	n := 0
	for _, e := range m.byCode {
		if e.Remote == remote {
			n++
		}
	}
	if len(m.byCode) >= MaxPending || n >= MaxPendingPerAddr {
		return Login{}, "", ErrTooMany
	}
	e := &entry{Login: Login{Code: code, Hostname: hostname, Remote: remote, Created: now, Expires: now.Add(Lifetime)},
		poll: hash(poll), done: make(chan struct{})}
	m.byCode[code] = e
	m.byPoll[e.poll] = e
	return e.Login, poll, nil
}

// pruneLocked drops expired logins and those whose grant was fetched.
func (m *Manager) pruneLocked(now time.Time) {
	for code, e := range m.byCode {
		if !now.Before(e.Expires) {
			delete(m.byCode, code)
			delete(m.byPoll, e.poll)
		}
	}
}

// Pending lists logins waiting for approval, oldest first.
func (m *Manager) Pending() []Login {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	var out []Login
	for _, e := range m.byCode {
		if e.grant == nil {
			out = append(out, e.Login)
		}
	}
	slices.SortFunc(out, func(a, b Login) int { return a.Created.Compare(b.Created) })
	return out
}

// Lookup returns the pending login with this code.
func (m *Manager) Lookup(code string) (Login, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	e, ok := m.byCode[code]
	if !ok || e.grant != nil {
		return Login{}, ErrUnknown
	}
	return e.Login, nil
}

// Approve approves the login with this code for user: mint makes the
// pre-auth key it will receive. A code is approved at most once; a
// second approval, or one after expiry, is ErrUnknown.
func (m *Manager) Approve(code, user string, mint func(user string, expiry time.Time) (string, error)) (Login, error) {
	now := m.now()
	m.mu.Lock()
	m.pruneLocked(now)
	e, ok := m.byCode[code]
	if !ok || e.grant != nil {
		m.mu.Unlock()
		return Login{}, ErrUnknown
	}
	e.grant = &Grant{User: user} // claimed: a racing approval gets ErrUnknown
	m.mu.Unlock()

	// The key only needs to outlive the node's next poll and up.
	k, err := mint(user, now.Add(Lifetime))
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		e.grant = nil
		return Login{}, err
	}
	e.grant.AuthKey = k
	close(e.done)
	return e.Login, nil
}

// Wait blocks until the login of this poll token is approved, ctx ends
// (ctx's error), or the login is unknown or expires (ErrUnknown). A
// grant is handed out once: the login is forgotten after it.
func (m *Manager) Wait(ctx context.Context, poll string) (Grant, error) {
	h := hash(poll)
	m.mu.Lock()
	m.pruneLocked(m.now())
	e, ok := m.byPoll[h]
	m.mu.Unlock()
	if !ok {
		return Grant{}, ErrUnknown
	}
	t := time.NewTimer(e.Expires.Sub(m.now()))
	defer t.Stop()
	select {
	case <-e.done:
	case <-t.C:
		return Grant{}, ErrUnknown
	case <-ctx.Done():
		return Grant{}, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byPoll[h]; !ok {
		return Grant{}, ErrUnknown // another poll took it
	}
	delete(m.byPoll, h)
	delete(m.byCode, e.Code)
	return *e.grant, nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The web console's one-time login links and sessions (internal/console)
// live in the database, so that every server sharing it honours them: a
// link printed by `weft admin console-link` at one server signs in at
// another, a session made at one is good at all, signing out at one ends
// it everywhere, and a restart signs nobody out. The store sees only the
// SHA-256 of each token (the console hashes them), never the tokens.

// ConsoleSession is a live console session.
type ConsoleSession struct {
	// User is who signed in; empty for the server's administrator (a
	// session from a login link).
	User string
	// Role is RoleAdmin for the server's administrator, else the user's
	// role as it is now: a user made member loses admin at the next
	// request of a session started as admin.
	Role     string
	Created  time.Time
	LastSeen time.Time // updated at most once a minute (touchConsoleEvery)
	// Expires is when the session ends unless it is used again: a
	// session used is extended (with LastSeen, so at most once a minute)
	// to its use + its Idle lifetime, never past MaxExpires.
	Expires    time.Time
	MaxExpires time.Time
}

// ConsoleSessionStart is a session to record.
type ConsoleSessionStart struct {
	// Hash is the SHA-256 (hex) of the session's token, the cookie.
	Hash string
	// User must exist; empty starts a session of the server's
	// administrator.
	User    string
	Expires time.Time
	// Idle, when set, makes the session sliding: each use (recorded
	// at most once a minute) extends it to that use + Idle, never past
	// MaxExpires. Zero: the session ends at Expires, used or not.
	Idle time.Duration
	// MaxExpires is the absolute end of a sliding session, however
	// much it is used; it must not be before Expires. Zero with Idle
	// set means Expires (never extended).
	MaxExpires time.Time
}

// touchConsoleEvery bounds how often a session's last_seen is written:
// a page view is a read, and most views write nothing.
const touchConsoleEvery = time.Minute

// errNoConsole is the ErrNotFound of a console link or session that is
// unknown, used, ended or expired; callers must not tell them apart.
func errNoConsole(what string) error {
	return fmt.Errorf("%w: no live console %s with that token: unknown, used, ended or expired", ErrNotFound, what)
}

// CreateConsoleLink records a login link by the hash of its token, after
// sweeping expired links.
func (s *sqlStore) CreateConsoleLink(ctx context.Context, hash string, expires time.Time) error {
	now := s.now()
	if hash == "" || !expires.After(now) {
		return fmt.Errorf("store: CreateConsoleLink: %w: a hash and a future expiry are required", ErrInvalid)
	}
	err := s.write(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_links WHERE expires <= ?`, toDB(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO console_links (hash, created_at, expires) VALUES (?, ?, ?)`,
			hash, toDB(now), toDB(expires))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: CreateConsoleLink: %w", err)
	}
	return nil
}

// UseConsoleLink spends the live login link whose token hashes to
// linkHash and starts the session st in the same transaction. The
// database decides who spends a link: the row is deleted by a
// conditional DELETE, so of several servers (or requests) presenting one
// link at once exactly one gets the session; the others, and any later
// or expired use, get ErrNotFound.
func (s *sqlStore) UseConsoleLink(ctx context.Context, linkHash string, st ConsoleSessionStart) (ConsoleSession, error) {
	var cs ConsoleSession
	err := s.write(ctx, func(tx *dbTx) error {
		now := s.now()
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_links WHERE expires <= ?`, toDB(now)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM console_links WHERE hash = ? AND expires > ?`, linkHash, toDB(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return errNoConsole("login link")
		}
		cs, err = insertConsoleSession(ctx, tx, st, now)
		return err
	})
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("store: UseConsoleLink: %w", err)
	}
	return cs, nil
}

// StartConsoleSession records a session (after sweeping expired ones):
// a sign-in with the identity provider.
func (s *sqlStore) StartConsoleSession(ctx context.Context, st ConsoleSessionStart) (ConsoleSession, error) {
	var cs ConsoleSession
	err := s.write(ctx, func(tx *dbTx) error {
		var err error
		cs, err = insertConsoleSession(ctx, tx, st, s.now())
		return err
	})
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("store: StartConsoleSession: %w", err)
	}
	return cs, nil
}

// insertConsoleSession sweeps expired sessions and records st.
func insertConsoleSession(ctx context.Context, tx *dbTx, st ConsoleSessionStart, now time.Time) (ConsoleSession, error) {
	now = fromDB(toDB(now))
	if st.Hash == "" || !st.Expires.After(now) {
		return ConsoleSession{}, fmt.Errorf("%w: a session needs a hash and a future expiry", ErrInvalid)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires <= ?`, toDB(now)); err != nil {
		return ConsoleSession{}, err
	}
	if st.Idle < 0 || !st.MaxExpires.IsZero() && st.MaxExpires.Before(st.Expires) {
		return ConsoleSession{}, fmt.Errorf("%w: a session's idle lifetime must not be negative, nor its absolute end before its expiry", ErrInvalid)
	}
	if st.MaxExpires.IsZero() {
		st.MaxExpires = st.Expires
	}
	var uid sql.NullInt64
	cs := ConsoleSession{User: st.User, Role: RoleAdmin, Created: now, LastSeen: now, Expires: fromDB(toDB(st.Expires)),
		MaxExpires: fromDB(toDB(st.MaxExpires))}
	if st.User != "" {
		u, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, st.User))
		if errors.Is(err, sql.ErrNoRows) {
			return ConsoleSession{}, fmt.Errorf("%w: no user %q", ErrNotFound, st.User)
		}
		if err != nil {
			return ConsoleSession{}, err
		}
		uid = sql.NullInt64{Int64: int64(u.ID), Valid: true}
		cs.Role = u.Role
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (hash, user_id, created_at, last_seen, expires, idle, max_expires)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, st.Hash, uid, toDB(now), toDB(now), toDB(cs.Expires), int64(st.Idle), toDB(cs.MaxExpires))
	if err != nil {
		return ConsoleSession{}, err
	}
	return cs, nil
}

// CheckConsoleSession returns the live session whose token hashes to
// hash (ErrNotFound when unknown, ended or expired), and records now as
// its last use when the one recorded is over a minute old; a sliding
// session (started with Idle) is extended in the same write to now +
// Idle, never past its MaxExpires. So a session in use lives on, a page
// view within the minute writes nothing, and no use keeps a session
// beyond its absolute end. The lookup is by the hash, in the database's
// index: the token itself is compared nowhere, and timing can tell at
// most about a hash, never a token.
func (s *sqlStore) CheckConsoleSession(ctx context.Context, hash string) (ConsoleSession, error) {
	now := s.now()
	var cs ConsoleSession
	var created, seen, expires, idle, maxExpires int64
	err := s.direct().QueryRowContext(ctx, `SELECT COALESCE(u.name, ''), COALESCE(u.role, ''), c.created_at, c.last_seen, c.expires,
		c.idle, c.max_expires
		FROM console_sessions c LEFT JOIN users u ON u.id = c.user_id
		WHERE c.hash = ? AND c.expires > ?`, hash, toDB(now)).Scan(&cs.User, &cs.Role, &created, &seen, &expires, &idle, &maxExpires)
	if errors.Is(err, sql.ErrNoRows) {
		return ConsoleSession{}, fmt.Errorf("store: CheckConsoleSession: %w", errNoConsole("session"))
	}
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("store: CheckConsoleSession: %w", err)
	}
	if cs.User == "" {
		cs.Role = RoleAdmin
	}
	cs.Created, cs.LastSeen, cs.Expires, cs.MaxExpires = fromDB(created), fromDB(seen), fromDB(expires), fromDB(maxExpires)
	if cs.MaxExpires.IsZero() { // a session from before sliding sessions
		cs.MaxExpires = cs.Expires
	}
	if now.Sub(cs.LastSeen) < touchConsoleEvery {
		return cs, nil
	}
	exp := cs.Expires
	if ext := now.Add(time.Duration(idle)); idle > 0 {
		if ext.After(cs.MaxExpires) {
			ext = cs.MaxExpires
		}
		if ext.After(exp) {
			exp = ext
		}
	}
	// Not the request's audited change: written on its own (writeTx
	// with no audit slot), whatever ctx carries.
	err = s.writeTx(ctx, func(tx *dbTx) error {
		_, err := tx.ExecContext(ctx, `UPDATE console_sessions SET last_seen = ?, expires = ? WHERE hash = ? AND last_seen < ? AND expires <= ?`,
			toDB(now), toDB(exp), hash, toDB(now), toDB(exp))
		return err
	}, nil)
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("store: CheckConsoleSession: recording the use: %w", err)
	}
	cs.LastSeen, cs.Expires = fromDB(toDB(now)), fromDB(toDB(exp))
	return cs, nil
}

// EndConsoleSession deletes the session whose token hashes to hash: a
// sign-out, at whichever server. ErrNotFound when there is none (ended
// already, at another server perhaps), and then nothing is recorded.
func (s *sqlStore) EndConsoleSession(ctx context.Context, hash string) error {
	err := s.write(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE hash = ?`, hash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return errNoConsole("session")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: EndConsoleSession: %w", err)
	}
	return nil
}

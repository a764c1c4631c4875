package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// NodeLogin is an interactive node login (internal/nodelogin) as the
// store keeps it: a machine waiting in `weft up` without a pre-auth key.
// It lives in the database so that every server sharing it sees it: a
// login started at one server can be approved at another, and the
// waiting node, wherever it asks, receives its key.
type NodeLogin struct {
	Code     string    // what the person opens and administrators approve
	Hostname string    // what the node said it is called
	Remote   string    // the address it asked from
	Created  time.Time //
	Expires  time.Time // after this it can be neither approved nor taken
	// User is who approved it joins as; empty while it waits.
	User string
}

// NodeLoginStart is a login to record.
type NodeLoginStart struct {
	Code     string // unique, random
	PollHash string // SHA-256 of the waiting node's poll token, unique
	Hostname string
	Remote   string
	Expires  time.Time
	// MaxPending and MaxPerRemote bound the logins waiting at once, in
	// all and from Remote (anyone who reaches the server can start one);
	// 0 means no bound.
	MaxPending, MaxPerRemote int
}

// ErrTooManyLogins: StartNodeLogin refused because too many logins wait.
var ErrTooManyLogins = errors.New("store: too many logins pending")

// NodeLoginGrant is what TakeNodeLogin hands the waiting node: its login
// and, once approved, a fresh one-off pre-auth key of the approving user
// (AuthKey empty while the login still waits).
type NodeLoginGrant struct {
	Login   NodeLogin
	AuthKey string
}

const nodeLoginColumns = `l.code, l.hostname, l.remote, l.created_at, l.expires, COALESCE(u.name, '')`
const nodeLoginFrom = ` FROM node_logins l LEFT JOIN users u ON u.id = l.user_id`

func scanNodeLogin(sc interface{ Scan(...any) error }) (NodeLogin, error) {
	var l NodeLogin
	var created, expires int64
	if err := sc.Scan(&l.Code, &l.Hostname, &l.Remote, &created, &expires, &l.User); err != nil {
		return NodeLogin{}, err
	}
	l.Created, l.Expires = fromDB(created), fromDB(expires)
	return l, nil
}

// StartNodeLogin records a new login after dropping expired ones.
func (s *sqlStore) StartNodeLogin(ctx context.Context, req NodeLoginStart) (NodeLogin, error) {
	now := fromDB(toDB(s.now()))
	l := NodeLogin{Code: req.Code, Hostname: req.Hostname, Remote: req.Remote, Created: now, Expires: fromDB(toDB(req.Expires))}
	if req.Code == "" || req.PollHash == "" || !l.Expires.After(now) {
		return NodeLogin{}, fmt.Errorf("store: StartNodeLogin: %w: code, poll hash and a future expiry are required", ErrInvalid)
	}
	err := s.write(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM node_logins WHERE expires <= ?`, toDB(now)); err != nil {
			return err
		}
		var all, here int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN remote = ? THEN 1 ELSE 0 END), 0)
			FROM node_logins WHERE user_id IS NULL`, req.Remote).Scan(&all, &here); err != nil {
			return err
		}
		if req.MaxPending > 0 && all >= req.MaxPending || req.MaxPerRemote > 0 && here >= req.MaxPerRemote {
			return ErrTooManyLogins
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO node_logins (code, poll_hash, hostname, remote, created_at, expires)
			VALUES (?, ?, ?, ?, ?, ?)`, l.Code, req.PollHash, l.Hostname, l.Remote, toDB(l.Created), toDB(l.Expires))
		return err
	})
	if err != nil {
		return NodeLogin{}, fmt.Errorf("store: StartNodeLogin: %w", err)
	}
	return l, nil
}

// PendingNodeLogins lists the logins waiting for approval (not approved,
// not expired), oldest first.
func (s *sqlStore) PendingNodeLogins(ctx context.Context) ([]NodeLogin, error) {
	rows, err := s.direct().QueryContext(ctx, `SELECT `+nodeLoginColumns+nodeLoginFrom+`
		WHERE l.user_id IS NULL AND l.expires > ? ORDER BY l.created_at, l.code`, toDB(s.now()))
	if err != nil {
		return nil, fmt.Errorf("store: PendingNodeLogins: %w", err)
	}
	defer rows.Close()
	var out []NodeLogin
	for rows.Next() {
		l, err := scanNodeLogin(rows)
		if err != nil {
			return nil, fmt.Errorf("store: PendingNodeLogins: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: PendingNodeLogins: %w", err)
	}
	return out, nil
}

// errNoLogin is the ErrNotFound of a login that is unknown, approved
// already or expired.
func errNoLogin(what string) error {
	return fmt.Errorf("%w: no login waiting with %s: unknown, already approved or expired", ErrNotFound, what)
}

// GetNodeLogin returns the login with code while it waits for approval.
func (s *sqlStore) GetNodeLogin(ctx context.Context, code string) (NodeLogin, error) {
	l, err := scanNodeLogin(s.direct().QueryRowContext(ctx, `SELECT `+nodeLoginColumns+nodeLoginFrom+`
		WHERE l.code = ? AND l.user_id IS NULL AND l.expires > ?`, code, toDB(s.now())))
	if errors.Is(err, sql.ErrNoRows) {
		return NodeLogin{}, fmt.Errorf("store: GetNodeLogin: %w", errNoLogin("that code"))
	}
	if err != nil {
		return NodeLogin{}, fmt.Errorf("store: GetNodeLogin: %w", err)
	}
	return l, nil
}

// ApproveNodeLogin lets the login with code join as user (which must
// exist). A login is approved at most once, and not after it expired.
func (s *sqlStore) ApproveNodeLogin(ctx context.Context, code, user string) (NodeLogin, error) {
	var l NodeLogin
	err := s.write(ctx, func(tx *dbTx) error {
		uid, err := userID(ctx, tx, user)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE node_logins SET user_id = ?
			WHERE code = ? AND user_id IS NULL AND expires > ?`, uid, code, toDB(s.now()))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errNoLogin("code " + code)
		}
		l, err = scanNodeLogin(tx.QueryRowContext(ctx, `SELECT `+nodeLoginColumns+nodeLoginFrom+` WHERE l.code = ?`, code))
		return err
	})
	if err != nil {
		return NodeLogin{}, fmt.Errorf("store: ApproveNodeLogin: %w", err)
	}
	return l, nil
}

// TakeNodeLogin is the waiting node's question, by the hash of its poll
// token: while its login waits, the login alone; once approved, in one
// transaction, the login is deleted and a one-off pre-auth key of the
// approving user, good until keyExpiry, is made and returned. ErrNotFound
// when no live login has that poll hash (never was, taken, expired).
func (s *sqlStore) TakeNodeLogin(ctx context.Context, pollHash string, keyExpiry time.Time) (NodeLoginGrant, error) {
	var g NodeLoginGrant
	err := s.write(ctx, func(tx *dbTx) error {
		g = NodeLoginGrant{}
		now := fromDB(toDB(s.now()))
		var uid sql.NullInt64
		l, err := scanNodeLogin(tx.QueryRowContext(ctx, `SELECT `+nodeLoginColumns+nodeLoginFrom+`
			WHERE l.poll_hash = ? AND l.expires > ?`, pollHash, toDB(now)))
		if errors.Is(err, sql.ErrNoRows) {
			return errNoLogin("that poll token")
		}
		if err != nil {
			return err
		}
		g.Login = l
		if l.User == "" {
			return nil
		}
		if err := tx.QueryRowContext(ctx, `DELETE FROM node_logins WHERE poll_hash = ? RETURNING user_id`, pollHash).Scan(&uid); err != nil {
			return err
		}
		k := AuthKey{User: l.User, CreatedAt: now, Expiry: fromDB(toDB(keyExpiry))}
		g.AuthKey, err = insertAuthKey(ctx, tx, UserID(uid.Int64), &k)
		return err
	})
	if err != nil {
		return NodeLoginGrant{}, fmt.Errorf("store: TakeNodeLogin: %w", err)
	}
	return g, nil
}

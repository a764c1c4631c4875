package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OIDCFlow is a sign-in in progress at the identity provider
// (internal/oidclogin), kept in the database so that the provider's
// redirect back may reach any server sharing it. It is found by the
// SHA-256 of the sign-in's OAuth state; the browser holds the secret the
// state, nonce and PKCE verifier are derived from, and the database
// none of them.
type OIDCFlow struct {
	StateHash string
	// Purpose and Data are what the sign-in is for ("console"; "node"
	// with the node login's code).
	Purpose, Data string
	Expires       time.Time
}

// ErrTooManyFlows: StartOIDCFlow refused because too many sign-ins are
// in progress.
var ErrTooManyFlows = errors.New("store: too many sign-ins in progress")

// StartOIDCFlow records a sign-in in progress after sweeping expired
// ones; ErrTooManyFlows when max (0: no bound) are in progress already.
func (s *sqlStore) StartOIDCFlow(ctx context.Context, f OIDCFlow, max int) error {
	now := s.now()
	if f.StateHash == "" || !f.Expires.After(now) {
		return fmt.Errorf("store: StartOIDCFlow: %w: a state hash and a future expiry are required", ErrInvalid)
	}
	err := s.write(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM oidc_flows WHERE expires <= ?`, toDB(now)); err != nil {
			return err
		}
		if max > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM oidc_flows`).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return ErrTooManyFlows
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO oidc_flows (state_hash, purpose, data, expires) VALUES (?, ?, ?, ?)`,
			f.StateHash, f.Purpose, f.Data, toDB(f.Expires))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: StartOIDCFlow: %w", err)
	}
	return nil
}

// TakeOIDCFlow deletes and returns the live sign-in with stateHash: a
// sign-in is finished once, at whichever server the provider's redirect
// reaches (ErrNotFound when unknown, finished or expired).
func (s *sqlStore) TakeOIDCFlow(ctx context.Context, stateHash string) (OIDCFlow, error) {
	var f OIDCFlow
	err := s.write(ctx, func(tx *dbTx) error {
		var exp int64
		err := tx.QueryRowContext(ctx, `DELETE FROM oidc_flows WHERE state_hash = ? AND expires > ? RETURNING purpose, data, expires`,
			stateHash, toDB(s.now())).Scan(&f.Purpose, &f.Data, &exp)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no sign-in in progress with that state: unknown, finished or expired", ErrNotFound)
		}
		f.StateHash, f.Expires = stateHash, fromDB(exp)
		return err
	})
	if err != nil {
		return OIDCFlow{}, fmt.Errorf("store: TakeOIDCFlow: %w", err)
	}
	return f, nil
}

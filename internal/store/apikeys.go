package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// An API key reads "wa" + 12 hex digits (the public prefix, its ID in
// listings and in revoke) + "_" + 64 hex digits of secret: 6 + 32 random
// bytes. As with pre-auth keys the store keeps only the prefix and the
// SHA-256 of the whole key: the secret is 256 random bits, so a plain hash
// cannot be reversed by guessing, and a stolen database holds no usable key.
const (
	apiKeyPrefixTag   = "wa"
	apiKeySecretBytes = 32
)

// APIKey describes an API key of the REST API. The secret itself is never
// stored or returned after creation.
type APIKey struct {
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	Expiry    time.Time `json:"expiry,omitzero"`     // zero: never expires
	RevokedAt time.Time `json:"revoked_at,omitzero"` // zero: not revoked
	LastUsed  time.Time `json:"last_used,omitzero"`  // zero: never used
}

// Live reports whether the key authenticates at now: not revoked and not
// past its expiry.
func (k APIKey) Live(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.Expiry.IsZero() || now.Before(k.Expiry))
}

// splitAPIKey returns the prefix of a full API key or of a bare prefix,
// and whether s has the shape of a full key.
func splitAPIKey(s string) (prefix string, full bool, ok bool) {
	s = strings.TrimSpace(s)
	p, secret, full := strings.Cut(s, "_")
	h, tagged := strings.CutPrefix(p, apiKeyPrefixTag)
	if !tagged || len(h) != 2*keyPrefixBytes || !isLowerHex(h) {
		return "", false, false
	}
	if full && (len(secret) != 2*apiKeySecretBytes || !isLowerHex(secret)) {
		return "", false, false
	}
	return p, full, true
}

func newAPIKeySecret() (prefix, full string, err error) {
	var b [keyPrefixBytes + apiKeySecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("making API key: %w", err)
	}
	prefix = apiKeyPrefixTag + hex.EncodeToString(b[:keyPrefixBytes])
	return prefix, prefix + "_" + hex.EncodeToString(b[keyPrefixBytes:]), nil
}

func (s *sqlStore) CreateAPIKey(ctx context.Context, expiry time.Time) (string, APIKey, error) {
	now := fromDB(toDB(s.now()))
	if !expiry.IsZero() && !expiry.After(now) {
		return "", APIKey{}, fmt.Errorf("store: CreateAPIKey: %w: expiry %v is not in the future", ErrInvalid, expiry)
	}
	k := APIKey{CreatedAt: now, Expiry: fromDB(toDB(expiry))}
	prefix, full, err := newAPIKeySecret()
	if err != nil {
		return "", APIKey{}, fmt.Errorf("store: CreateAPIKey: %w", err)
	}
	k.Prefix = prefix
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (prefix, hash, created_at, expiry) VALUES (?, ?, ?, ?)`,
			k.Prefix, hashKey(full), toDB(k.CreatedAt), toDB(k.Expiry))
		return err
	})
	if err != nil {
		return "", APIKey{}, fmt.Errorf("store: CreateAPIKey: %w", err)
	}
	return full, k, nil
}

const apiKeyColumns = `prefix, hash, created_at, expiry, revoked_at, last_used`

func scanAPIKey(sc interface{ Scan(...any) error }) (APIKey, string, error) {
	var k APIKey
	var hash string
	var created, expiry, revoked, used int64
	if err := sc.Scan(&k.Prefix, &hash, &created, &expiry, &revoked, &used); err != nil {
		return APIKey{}, "", err
	}
	k.CreatedAt, k.Expiry, k.RevokedAt, k.LastUsed = fromDB(created), fromDB(expiry), fromDB(revoked), fromDB(used)
	return k, hash, nil
}

func (s *sqlStore) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: ListAPIKeys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, _, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("store: ListAPIKeys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: ListAPIKeys: %w", err)
	}
	return out, nil
}

func (s *sqlStore) RevokeAPIKey(ctx context.Context, id string) error {
	prefix, _, ok := splitAPIKey(id)
	if !ok {
		return fmt.Errorf("store: RevokeAPIKey: %w: %q is not an API key or key prefix (wa + 12 hex digits; `weft admin apikeys list` shows them)", ErrInvalid, id)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at = 0`, toDB(s.now()), prefix)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1 FROM api_keys WHERE prefix = ?`, prefix).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: no API key %s", ErrNotFound, prefix)
			}
		}
		return nil // revoking a revoked key again changes nothing
	})
	if err != nil {
		return fmt.Errorf("store: RevokeAPIKey: %w", err)
	}
	return nil
}

func (s *sqlStore) CheckAPIKey(ctx context.Context, full string) (APIKey, error) {
	full = strings.TrimSpace(full) // as read from a key file
	prefix, isFull, ok := splitAPIKey(full)
	if !ok || !isFull {
		return APIKey{}, ErrAPIKeyInvalid
	}
	var k APIKey
	err := s.write(ctx, func(tx *sql.Tx) error {
		got, hash, err := scanAPIKey(tx.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE prefix = ?`, prefix))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrAPIKeyInvalid
		}
		if err != nil {
			return err
		}
		// The prefix is public; the comparison of the secret's hash is
		// constant-time so response timing says nothing about it.
		if subtle.ConstantTimeCompare([]byte(hash), []byte(hashKey(full))) != 1 {
			return ErrAPIKeyInvalid
		}
		now := s.now()
		if !got.Live(now) {
			return ErrAPIKeyInvalid
		}
		got.LastUsed = fromDB(toDB(now))
		k = got
		_, err = tx.ExecContext(ctx, `UPDATE api_keys SET last_used = ? WHERE prefix = ?`, toDB(now), prefix)
		return err
	})
	if errors.Is(err, ErrAPIKeyInvalid) {
		return APIKey{}, ErrAPIKeyInvalid
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("store: CheckAPIKey: %w", err)
	}
	return k, nil
}

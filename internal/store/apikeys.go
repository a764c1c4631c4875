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
	Prefix string `json:"prefix"`
	// User is the user the key acts for, with that user's role; empty
	// means the server's administrator (keys made without --user).
	User      string    `json:"user,omitempty"`
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

// APIKeyRequest describes an API key to create.
type APIKeyRequest struct {
	// User the key acts for; empty: the server's administrator.
	User string
	// Expiry is when the key stops working; zero means never.
	Expiry time.Time
}

func (s *sqlStore) CreateAPIKey(ctx context.Context, req APIKeyRequest) (string, APIKey, error) {
	expiry := req.Expiry
	now := fromDB(toDB(s.now()))
	if !expiry.IsZero() && !expiry.After(now) {
		return "", APIKey{}, fmt.Errorf("store: CreateAPIKey: %w: expiry %v is not in the future", ErrInvalid, expiry)
	}
	k := APIKey{User: req.User, CreatedAt: now, Expiry: fromDB(toDB(expiry))}
	prefix, full, err := newAPIKeySecret()
	if err != nil {
		return "", APIKey{}, fmt.Errorf("store: CreateAPIKey: %w", err)
	}
	k.Prefix = prefix
	err = s.write(ctx, func(tx *dbTx) error {
		var uid sql.NullInt64
		if req.User != "" {
			id, err := userID(ctx, tx, req.User)
			if err != nil {
				return err
			}
			uid = sql.NullInt64{Int64: int64(id), Valid: true}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (prefix, hash, user_id, created_at, expiry) VALUES (?, ?, ?, ?, ?)`,
			k.Prefix, hashKey(full), uid, toDB(k.CreatedAt), toDB(k.Expiry))
		return err
	})
	if err != nil {
		return "", APIKey{}, fmt.Errorf("store: CreateAPIKey: %w", err)
	}
	return full, k, nil
}

// apiKeyColumns are read from api_keys k joined with users u.
const apiKeyColumns = `k.prefix, k.hash, COALESCE(u.name, ''), k.created_at, k.expiry, k.revoked_at, k.last_used`

const apiKeyFrom = ` FROM api_keys k LEFT JOIN users u ON u.id = k.user_id`

func scanAPIKey(sc rowScanner) (APIKey, string, error) {
	var k APIKey
	var hash string
	var created, expiry, revoked, used int64
	if err := sc.Scan(&k.Prefix, &hash, &k.User, &created, &expiry, &revoked, &used); err != nil {
		return APIKey{}, "", err
	}
	k.CreatedAt, k.Expiry, k.RevokedAt, k.LastUsed = fromDB(created), fromDB(expiry), fromDB(revoked), fromDB(used)
	return k, hash, nil
}

func (s *sqlStore) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	keys, err := queryAll(ctx, s.direct(), func(sc rowScanner) (APIKey, error) {
		k, _, err := scanAPIKey(sc)
		return k, err
	}, `SELECT `+apiKeyColumns+apiKeyFrom+` ORDER BY k.id`)
	if err != nil {
		return nil, fmt.Errorf("store: ListAPIKeys: %w", err)
	}
	return keys, nil
}

func (s *sqlStore) RevokeAPIKey(ctx context.Context, id string) error {
	prefix, _, ok := splitAPIKey(id)
	if !ok {
		return fmt.Errorf("store: RevokeAPIKey: %w: %q is not an API key or key prefix (wa + 12 hex digits; `weft admin apikeys list` shows them)", ErrInvalid, id)
	}
	err := s.write(ctx, func(tx *dbTx) error {
		// Revoking a revoked key again changes nothing.
		return updateKey(ctx, tx, "api_keys", prefix, fmt.Errorf("%w: no API key %s", ErrNotFound, prefix),
			`UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at = 0`, toDB(s.now()), prefix)
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
	err := s.write(ctx, func(tx *dbTx) error {
		got, hash, err := scanAPIKey(tx.QueryRowContext(ctx, `SELECT `+apiKeyColumns+apiKeyFrom+` WHERE k.prefix = ?`, prefix))
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

package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A pre-auth key reads "wk" + 12 hex digits (the public prefix, its ID in
// listings) + "_" + 48 hex digits of secret: 6 + 24 random bytes. The
// store keeps the prefix and SHA-256 of the whole key. A plain hash is
// enough because the secret is 192 random bits, not a password that could
// be guessed from a list.
const (
	keyPrefixTag   = "wk"
	keyPrefixBytes = 6
	keySecretBytes = 24
)

// splitAuthKey returns the prefix of a full key or of a bare prefix, and
// whether s has the shape of a full key.
func splitAuthKey(s string) (prefix string, full bool, ok bool) {
	s = strings.TrimSpace(s)
	p, secret, full := strings.Cut(s, "_")
	if !validKeyPrefix(p) {
		return "", false, false
	}
	if full && (len(secret) != 2*keySecretBytes || !isLowerHex(secret)) {
		return "", false, false
	}
	return p, full, true
}

func validKeyPrefix(p string) bool {
	h, ok := strings.CutPrefix(p, keyPrefixTag)
	return ok && len(h) == 2*keyPrefixBytes && isLowerHex(h)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func hashKey(full string) string {
	h := sha256.Sum256([]byte(full))
	return hex.EncodeToString(h[:])
}

func newAuthKeySecret() (prefix, full string, err error) {
	var b [keyPrefixBytes + keySecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("making key: %w", err)
	}
	prefix = keyPrefixTag + hex.EncodeToString(b[:keyPrefixBytes])
	return prefix, prefix + "_" + hex.EncodeToString(b[keyPrefixBytes:]), nil
}

func (s *sqlStore) CreateAuthKey(ctx context.Context, req AuthKeyRequest) (string, AuthKey, error) {
	tags := normTags(req.Tags)
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return "", AuthKey{}, fmt.Errorf("store: CreateAuthKey: %w", err)
		}
	}
	now := fromDB(toDB(s.now()))
	if !req.Expiry.IsZero() && !req.Expiry.After(now) {
		return "", AuthKey{}, fmt.Errorf("store: CreateAuthKey: %w: expiry %v is not in the future", ErrInvalid, req.Expiry)
	}
	k := AuthKey{
		User:      req.User,
		Reusable:  req.Reusable,
		Ephemeral: req.Ephemeral,
		Tags:      tags,
		CreatedAt: now,
		Expiry:    fromDB(toDB(req.Expiry)),
	}
	var full string
	err := s.write(ctx, func(tx *dbTx) error {
		uid, err := userID(ctx, tx, req.User)
		if err != nil {
			return err
		}
		full, err = insertAuthKey(ctx, tx, uid, &k)
		return err
	})
	if err != nil {
		return "", AuthKey{}, fmt.Errorf("store: CreateAuthKey: %w", err)
	}
	return full, k, nil
}

// insertAuthKey adds k for user uid in tx with a new secret, which it
// returns; it sets k.Prefix.
func insertAuthKey(ctx context.Context, tx *dbTx, uid UserID, k *AuthKey) (string, error) {
	prefix, full, err := newAuthKeySecret()
	if err != nil {
		return "", err
	}
	k.Prefix = prefix
	_, err = tx.ExecContext(ctx, `INSERT INTO auth_keys
		(prefix, hash, user_id, reusable, ephemeral, tags, created_at, expiry)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.Prefix, hashKey(full), uid, k.Reusable, k.Ephemeral, strings.Join(k.Tags, ","),
		toDB(k.CreatedAt), toDB(k.Expiry))
	return full, err
}

const authKeyColumns = `k.id, k.prefix, k.hash, u.name, k.reusable, k.ephemeral, k.tags, k.created_at, k.expiry, k.uses, k.last_used`

// authKeyRow is an auth_keys row with its internal ID and hash.
type authKeyRow struct {
	AuthKey
	id   int64
	hash string
}

func scanAuthKey(sc rowScanner) (authKeyRow, error) {
	var r authKeyRow
	var tags string
	var created, expiry, lastUsed int64
	err := sc.Scan(&r.id, &r.Prefix, &r.hash, &r.User, &r.Reusable, &r.Ephemeral, &tags, &created, &expiry, &r.Uses, &lastUsed)
	if err != nil {
		return r, err
	}
	r.Tags = splitTags(tags)
	r.CreatedAt, r.Expiry, r.LastUsed = fromDB(created), fromDB(expiry), fromDB(lastUsed)
	return r, nil
}

func splitTags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func (s *sqlStore) ListAuthKeys(ctx context.Context, user string) ([]AuthKey, error) {
	var keys []AuthKey
	err := s.read(ctx, func(tx *dbTx) error {
		q := `SELECT ` + authKeyColumns + ` FROM auth_keys k JOIN users u ON u.id = k.user_id`
		var args []any
		if user != "" {
			if _, err := userID(ctx, tx, user); err != nil {
				return err
			}
			q += ` WHERE u.name = ?`
			args = append(args, user)
		}
		var err error
		keys, err = queryAll(ctx, tx, func(sc rowScanner) (AuthKey, error) {
			r, err := scanAuthKey(sc)
			return r.AuthKey, err
		}, q+` ORDER BY k.created_at, k.id`, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: ListAuthKeys: %w", err)
	}
	return keys, nil
}

func (s *sqlStore) ExpireAuthKey(ctx context.Context, id string) error {
	prefix, _, ok := splitAuthKey(id)
	if !ok {
		return fmt.Errorf("store: ExpireAuthKey: %w: %q is not a key or key prefix (like wk3f9a0c1d2e4b)", ErrInvalid, id)
	}
	now := toDB(s.now())
	err := s.write(ctx, func(tx *dbTx) error {
		// An already expired key keeps its earlier expiry.
		return updateKey(ctx, tx, "auth_keys", prefix, fmt.Errorf("%w: no key %q", ErrNotFound, prefix),
			`UPDATE auth_keys SET expiry = ? WHERE prefix = ? AND (expiry = 0 OR expiry > ?)`, now, prefix, now)
	})
	if err != nil {
		return fmt.Errorf("store: ExpireAuthKey: %w", err)
	}
	return nil
}

// lookupAuthKey finds the key a node presented, checking the secret.
func lookupAuthKey(ctx context.Context, tx *dbTx, secret string) (authKeyRow, error) {
	secret = strings.TrimSpace(secret)
	prefix, full, ok := splitAuthKey(secret)
	if !ok || !full {
		return authKeyRow{}, ErrKeyInvalid
	}
	r, err := scanAuthKey(tx.QueryRowContext(ctx, `SELECT `+authKeyColumns+`
		FROM auth_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?`, prefix))
	if errors.Is(err, sql.ErrNoRows) {
		return authKeyRow{}, ErrKeyInvalid
	}
	if err != nil {
		return authKeyRow{}, err
	}
	if subtle.ConstantTimeCompare([]byte(r.hash), []byte(hashKey(secret))) != 1 {
		return authKeyRow{}, ErrKeyInvalid
	}
	return r, nil
}

// updateKey runs update, which changes the key with prefix in table (API
// or auth keys) unless it is already so. A key that update leaves as it
// was is fine; one that does not exist is notFound.
func updateKey(ctx context.Context, tx *dbTx, table, prefix string, notFound error, update string, args ...any) error {
	res, err := tx.ExecContext(ctx, update, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE prefix = ?`, prefix).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return notFound
		}
	}
	return nil
}

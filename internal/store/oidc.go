package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// OIDCIdentity is who the identity provider says signed in.
type OIDCIdentity struct {
	Issuer  string // the provider's issuer URL
	Subject string // the provider's stable ID of the person (sub)
	Email   string
	Name    string // preferred_username or name, for naming a new user
	Groups  []string
}

// maxGroups bounds what one sign-in may store.
const maxGroups = 256

func (s *sqlStore) OIDCUser(ctx context.Context, id OIDCIdentity) (User, error) {
	if id.Issuer == "" || id.Subject == "" {
		return User{}, fmt.Errorf("store: OIDCUser: %w: no issuer or subject", ErrInvalid)
	}
	groups := slices.Clone(id.Groups)
	slices.Sort(groups)
	groups = slices.Compact(groups)
	if len(groups) > maxGroups {
		groups = groups[:maxGroups]
	}
	gj := ""
	if len(groups) > 0 {
		b, err := json.Marshal(groups)
		if err != nil {
			return User{}, fmt.Errorf("store: OIDCUser: %w", err)
		}
		gj = string(b)
	}
	var u User
	err := s.write(ctx, func(tx *dbTx) error {
		var uid UserID
		err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE oidc_issuer = ? AND oidc_subject = ?`, id.Issuer, id.Subject).Scan(&uid)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			name, err := freeUserName(ctx, tx, userNameFor(id))
			if err != nil {
				return err
			}
			err = tx.QueryRowContext(ctx, `INSERT INTO users (name, role, created_at, oidc_issuer, oidc_subject, email, groups)
				VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, name, RoleMember, toDB(s.now()), id.Issuer, id.Subject, id.Email, gj).Scan(&uid)
			if err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if _, err := tx.ExecContext(ctx, `UPDATE users SET email = ?, groups = ? WHERE id = ?`, id.Email, gj, uid); err != nil {
				return err
			}
		}
		u, err = scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, uid))
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("store: OIDCUser: %w", err)
	}
	return u, nil
}

// userNameFor makes a user name from what the provider said: the email's
// local part, else the name, lower-cased, other characters as -.
func userNameFor(id OIDCIdentity) string {
	base := id.Name
	if local, _, ok := strings.Cut(id.Email, "@"); ok && local != "" {
		base = local
	}
	var b strings.Builder
	for _, c := range strings.ToLower(base) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-._")
	if len(name) > 50 {
		name = name[:50]
	}
	if name == "" {
		name = "user"
	}
	return name
}

// freeUserName returns base, or base-2, base-3... whichever no user has.
func freeUserName(ctx context.Context, tx *dbTx, base string) (string, error) {
	for i := 1; i < 10000; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		if _, err := userID(ctx, tx, name); errors.Is(err, ErrNotFound) {
			return name, ValidateUserName(name)
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: no free user name for %q", ErrExists, base)
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

func (s *sqlStore) CreateUser(ctx context.Context, name string) (User, error) {
	if err := ValidateUserName(name); err != nil {
		return User{}, fmt.Errorf("store: CreateUser: %w", err)
	}
	u := User{Name: name, Role: RoleMember, CreatedAt: fromDB(toDB(s.now()))}
	err := s.write(ctx, func(tx *dbTx) error {
		if _, err := userID(ctx, tx, name); err == nil {
			return fmt.Errorf("%w: user %q", ErrExists, name)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO users (name, role, created_at) VALUES (?, ?, ?) RETURNING id`,
			name, u.Role, toDB(u.CreatedAt)).Scan(&u.ID)
	})
	if err != nil {
		return User{}, fmt.Errorf("store: CreateUser: %w", err)
	}
	return u, nil
}

func (s *sqlStore) ListUsers(ctx context.Context) ([]User, error) {
	var users []User
	err := s.read(ctx, func(tx *dbTx) error {
		var err error
		users, err = queryAll(ctx, tx, scanUser, `SELECT `+userColumns+` FROM users ORDER BY name`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: ListUsers: %w", err)
	}
	return users, nil
}

func (s *sqlStore) DeleteUser(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *dbTx) error {
		id, err := userID(ctx, tx, name)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE user_id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: user %q owns %d node(s); delete them first", ErrUserInUse, name, n)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: DeleteUser: %w", err)
	}
	return nil
}

// userID looks up a user by name.
func userID(ctx context.Context, tx *dbTx, name string) (UserID, error) {
	var id UserID
	err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: no user %q", ErrNotFound, name)
	}
	return id, err
}

const userColumns = `id, name, role, created_at, oidc_issuer, email, groups`

func scanUser(sc rowScanner) (User, error) {
	var u User
	var created int64
	var groups string
	if err := sc.Scan(&u.ID, &u.Name, &u.Role, &created, &u.Issuer, &u.Email, &groups); err != nil {
		return User{}, err
	}
	u.CreatedAt = fromDB(created)
	if groups != "" {
		if err := json.Unmarshal([]byte(groups), &u.Groups); err != nil {
			return User{}, fmt.Errorf("user %s: groups: %w", u.Name, err)
		}
	}
	return u, nil
}

func (s *sqlStore) GetUser(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.direct().QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: GetUser: %w: no user %q", ErrNotFound, name)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: GetUser: %w", err)
	}
	return u, nil
}

func (s *sqlStore) SetUserRole(ctx context.Context, name, role string) (User, error) {
	if role != RoleAdmin && role != RoleMember {
		return User{}, fmt.Errorf("store: SetUserRole: %w: role %q: want %s or %s", ErrInvalid, role, RoleAdmin, RoleMember)
	}
	var u User
	err := s.write(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET role = ? WHERE name = ?`, role, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: no user %q", ErrNotFound, name)
		}
		u, err = scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name))
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("store: SetUserRole: %w", err)
	}
	return u, nil
}

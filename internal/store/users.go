package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

func (s *sqlStore) CreateUser(ctx context.Context, name string) (User, error) {
	if err := ValidateUserName(name); err != nil {
		return User{}, fmt.Errorf("store: CreateUser: %w", err)
	}
	u := User{Name: name, CreatedAt: fromDB(toDB(s.now()))}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := userID(ctx, tx, name); err == nil {
			return fmt.Errorf("%w: user %q", ErrExists, name)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO users (name, created_at) VALUES (?, ?) RETURNING id`,
			name, toDB(u.CreatedAt)).Scan(&u.ID)
	})
	if err != nil {
		return User{}, fmt.Errorf("store: CreateUser: %w", err)
	}
	return u, nil
}

func (s *sqlStore) ListUsers(ctx context.Context) ([]User, error) {
	var users []User
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, name, created_at FROM users ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u User
			var created int64
			if err := rows.Scan(&u.ID, &u.Name, &created); err != nil {
				return err
			}
			u.CreatedAt = fromDB(created)
			users = append(users, u)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: ListUsers: %w", err)
	}
	return users, nil
}

func (s *sqlStore) DeleteUser(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
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
func userID(ctx context.Context, tx *sql.Tx, name string) (UserID, error) {
	var id UserID
	err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: no user %q", ErrNotFound, name)
	}
	return id, err
}

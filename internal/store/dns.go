package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

func (s *sqlStore) DNSSettings(ctx context.Context) ([]byte, time.Time, error) {
	var src string
	var at int64
	err := s.direct().QueryRowContext(ctx, `SELECT source, updated_at FROM dns_settings WHERE id = 1`).Scan(&src, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("store: DNSSettings: %w", err)
	}
	return []byte(src), fromDB(at), nil
}

func (s *sqlStore) SetDNSSettings(ctx context.Context, source []byte) error {
	err := s.write(ctx, func(tx *dbTx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO dns_settings (id, source, updated_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET source = excluded.source, updated_at = excluded.updated_at`,
			string(source), toDB(s.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: SetDNSSettings: %w", err)
	}
	return nil
}

package store

import (
	"context"
	"fmt"
	"time"

	"weft/internal/changefeed"
)

// Control servers sharing one database keep a liveness row each
// (control_servers), so that they can tell when one of them died without
// saying goodbye (SIGKILL, a host gone): its nodes' streams ended with it,
// but it could not tell the others so. A live server bumps its row's beat
// counter every few seconds; the others watch the counter with their own
// clocks, so no two hosts' clocks are ever compared, and the first to see
// it stand still for long enough removes the row (ClaimDeadServer) and
// announces the server gone on the change feed. The row names the server
// by its change-feed origin, which is what the other servers know it by
// (docs/ha.md, docs/changefeed.md).

// ServerBeat is one control server's liveness row.
type ServerBeat struct {
	// Origin is the server's change-feed origin, fresh at every start.
	Origin string `json:"origin"`
	// Beat counts the server's heartbeats; it only grows while the
	// server lives.
	Beat int64 `json:"beat"`
	// At is when the server wrote Beat, by its own clock: for people
	// reading the table, never compared with another host's clock.
	At time.Time `json:"at"`
}

func (s *sqlStore) Heartbeat(ctx context.Context, origin string, beat int64) (bool, error) {
	if !changefeed.ValidOrigin(origin) {
		return false, fmt.Errorf("%w: server origin %q", ErrInvalid, origin)
	}
	var known bool
	err := s.write(ctx, func(tx *dbTx) error {
		at := toDB(s.now())
		res, err := tx.ExecContext(ctx, `UPDATE control_servers SET beat = ?, beat_at = ? WHERE origin = ?`, beat, at, origin)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if known = n > 0; known {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO control_servers (origin, beat, beat_at) VALUES (?, ?, ?)`, origin, beat, at)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: Heartbeat: %w", err)
	}
	return known, nil
}

func (s *sqlStore) ListServers(ctx context.Context) ([]ServerBeat, error) {
	rows, err := s.direct().QueryContext(ctx, `SELECT origin, beat, beat_at FROM control_servers ORDER BY origin`)
	if err != nil {
		return nil, fmt.Errorf("store: ListServers: %w", err)
	}
	defer rows.Close()
	var out []ServerBeat
	for rows.Next() {
		var b ServerBeat
		var at int64
		if err := rows.Scan(&b.Origin, &b.Beat, &at); err != nil {
			return nil, fmt.Errorf("store: ListServers: %w", err)
		}
		b.At = fromDB(at)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: ListServers: %w", err)
	}
	return out, nil
}

func (s *sqlStore) ClaimDeadServer(ctx context.Context, origin string, beat int64) (bool, error) {
	var claimed bool
	err := s.write(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM control_servers WHERE origin = ? AND beat = ?`, origin, beat)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		claimed = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: ClaimDeadServer: %w", err)
	}
	return claimed, nil
}

func (s *sqlStore) RemoveServer(ctx context.Context, origin string) error {
	err := s.write(ctx, func(tx *dbTx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM control_servers WHERE origin = ?`, origin)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: RemoveServer: %w", err)
	}
	return nil
}

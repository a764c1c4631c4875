package store

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/jackc/pgx/v5"
)

// copyTable streams one table's rows from the SQLite snapshot into the
// PostgreSQL transaction with COPY, converting SQLite's loose values to
// the target column's type, and returns the number of rows.
func copyTable(ctx context.Context, src *sqlStore, tx pgx.Tx, table string) (int64, error) {
	types, err := pgColumnTypes(ctx, tx, table)
	if err != nil {
		return 0, err
	}
	rows, err := src.db.QueryContext(ctx, `SELECT * FROM `+pgx.Identifier{table}.Sanitize())
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	for _, c := range cols {
		if _, ok := types[c]; !ok {
			return 0, fmt.Errorf("column %s is not in the PostgreSQL schema", c)
		}
	}
	var data [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return 0, err
		}
		for i, c := range cols {
			if vals[i], err = pgValue(vals[i], types[c]); err != nil {
				return 0, fmt.Errorf("column %s: %w", c, err)
			}
		}
		data = append(data, vals)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(data))
}

// pgColumnTypes returns the data type of each column of a table in the
// target's current schema.
func pgColumnTypes(ctx context.Context, tx pgx.Tx, table string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1`, table)
	if err != nil {
		return nil, err
	}
	types, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var c [2]string
		err := r.Scan(&c[0], &c[1])
		return c, err
	})
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(types))
	for _, c := range types {
		m[c[0]] = c[1]
	}
	return m, nil
}

// pgValue converts a value read from SQLite for a PostgreSQL column of
// type pgType: SQLite keeps booleans as integers and may hand text back
// as bytes.
func pgValue(v any, pgType string) (any, error) {
	switch pgType {
	case "boolean":
		switch b := v.(type) {
		case int64:
			return b != 0, nil
		case bool, nil:
			return b, nil
		}
	case "text":
		switch s := v.(type) {
		case []byte:
			return string(s), nil
		case string, nil:
			return s, nil
		}
	case "bigint", "integer":
		switch n := v.(type) {
		case int64, nil:
			return n, nil
		}
	case "bytea":
		switch b := v.(type) {
		case string:
			return []byte(b), nil
		case []byte, nil:
			return b, nil
		}
	default:
		return nil, fmt.Errorf("PostgreSQL type %s is not handled by the copy", pgType)
	}
	return nil, fmt.Errorf("value %v (%T) does not fit PostgreSQL type %s", v, v, pgType)
}

// continueSequence makes the target's ID sequence of table continue after
// the highest ID the source ever handed out (SQLite's AUTOINCREMENT high
// water mark, which outlives deleted rows), so no ID is reused.
func continueSequence(ctx context.Context, src *sqlStore, tx pgx.Tx, table, idColumn string) error {
	if idColumn == "" {
		return nil
	}
	var high int64
	err := src.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = ?`, table).Scan(&high)
	if err != nil {
		return err
	}
	var maxID int64
	col := pgx.Identifier{idColumn}.Sanitize()
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(`+col+`), 0) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&maxID); err != nil {
		return err
	}
	high = max(high, maxID)
	if high == 0 {
		_, err = tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), 1, false)`, table, idColumn)
	} else {
		_, err = tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), $3, true)`, table, idColumn, high)
	}
	return err
}

// verifyCopy reads the committed target back and compares it with the
// snapshot: every table's row count, and every node's identity, keys,
// addresses and routes.
func verifyCopy(ctx context.Context, src, dst *sqlStore, rep *CopyReport) error {
	for i := range rep.Tables {
		t := &rep.Tables[i]
		q := `SELECT COUNT(*) FROM ` + pgx.Identifier{t.Table}.Sanitize()
		if err := dst.db.QueryRowContext(ctx, q).Scan(&t.Target); err != nil {
			return fmt.Errorf("store: copy: verify %s: %w", t.Table, err)
		}
		if t.Target != t.Source {
			return fmt.Errorf("store: copy: verify: table %s has %d rows in PostgreSQL, %d in the SQLite snapshot", t.Table, t.Target, t.Source)
		}
	}
	_, srcULA := src.AddressPrefixes()
	if _, dstULA := dst.AddressPrefixes(); dstULA != srcULA {
		return fmt.Errorf("store: copy: verify: the tailnet's IPv6 prefix is %v in PostgreSQL, %v in SQLite", dstULA, srcULA)
	}
	want, err := src.ListNodes(ctx)
	if err != nil {
		return fmt.Errorf("store: copy: verify: %w", err)
	}
	got, err := dst.ListNodes(ctx)
	if err != nil {
		return fmt.Errorf("store: copy: verify: %w", err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("store: copy: verify: %d nodes in PostgreSQL, %d in SQLite", len(got), len(want))
	}
	for i := range want {
		if a, b := nodeIdentity(want[i]), nodeIdentity(got[i]); !reflect.DeepEqual(a, b) {
			return fmt.Errorf("store: copy: verify: node %d differs: SQLite %+v, PostgreSQL %+v", want[i].ID, a, b)
		}
	}
	rep.Nodes = len(want)
	return nil
}

// nodeIdentityFields is what a node must keep across the copy.
type nodeIdentityFields struct {
	ID                int64
	Name, User        string
	MachineKey        string
	NodeKey           string
	IPv4, IPv6        netip.Addr
	Advertised        []netip.Prefix
	Approved          []netip.Prefix
	KeyExpiry, Tags   string
	CreatedAtUnixNano int64
}

func nodeIdentity(n Node) nodeIdentityFields {
	return nodeIdentityFields{
		ID: int64(n.ID), Name: n.Name, User: n.User,
		MachineKey: n.MachineKey.String(), NodeKey: n.NodeKey.String(),
		IPv4: n.IPv4, IPv6: n.IPv6,
		Advertised: slices.Clone(n.AdvertisedRoutes), Approved: slices.Clone(n.ApprovedRoutes),
		KeyExpiry: n.KeyExpiry.String(), Tags: fmt.Sprint(n.Tags),
		CreatedAtUnixNano: n.CreatedAt.UnixNano(),
	}
}

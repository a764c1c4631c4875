package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// AuditEntry is one change in the audit log: who made it, with which
// credential, from where, when, and what.
type AuditEntry struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"`
	// Actor is the user who made the change; empty means the server's
	// administrator (the admin socket, or an API key made without a user).
	Actor string `json:"actor,omitempty"`
	// Credential says how the actor signed in: "admin socket",
	// "API key wa…", "console session", "OIDC".
	Credential string `json:"credential"`
	// Remote is the client's address ("local" for the admin socket).
	Remote string `json:"remote"`
	// Action names the change, such as "node.rename" or "policy.set".
	Action string `json:"action"`
	// Target is what was changed, such as "node busan".
	Target string `json:"target,omitempty"`
	// Detail is the request, shortened; never a secret.
	Detail string `json:"detail,omitempty"`
}

// AuditQuery pages through the audit log, newest first.
type AuditQuery struct {
	Before int64 // only entries with a smaller ID; 0: from the newest
	Limit  int   // at most this many; 0: all
}

// maxAuditText bounds each text field of an entry, so a huge request
// cannot grow the log without limit.
const maxAuditText = 2048

func clip(s string) string {
	if len(s) <= maxAuditText {
		return s
	}
	return s[:maxAuditText] + "…"
}

// AppendAudit records e on its own, ignoring any entry WithAudit put in
// ctx: for changes that are not in the store.
func (s *sqlStore) AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Action == "" {
		return AuditEntry{}, fmt.Errorf("store: AppendAudit: %w: no action", ErrInvalid)
	}
	err := s.writeTx(ctx, func(tx *dbTx) error { return insertAudit(ctx, tx, &e, s.now()) }, nil)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: AppendAudit: %w", err)
	}
	return e, nil
}

// insertAudit writes e in tx and sets its ID and time (now when zero).
func insertAudit(ctx context.Context, tx *dbTx, e *AuditEntry, now time.Time) error {
	if e.At.IsZero() {
		e.At = now
	}
	e.At = fromDB(toDB(e.At))
	e.Actor, e.Credential, e.Remote = clip(e.Actor), clip(e.Credential), clip(e.Remote)
	e.Action, e.Target, e.Detail = clip(e.Action), clip(e.Target), clip(e.Detail)
	err := tx.QueryRowContext(ctx, `INSERT INTO audit_log (at, actor, credential, remote, action, target, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		toDB(e.At), e.Actor, e.Credential, e.Remote, e.Action, e.Target, e.Detail).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// An audited change and its audit row are one transaction: the admin API
// puts the entry in the request's context (WithAudit) before it calls
// the store, and the first write made with that context records it in
// its own transaction. A change that fails leaves no audit row; an audit
// row that cannot be written undoes the change.

// auditSlot is the entry WithAudit put in a context, and whether a write
// has recorded it.
type auditSlot struct {
	e    AuditEntry
	done atomic.Bool
}

type auditKey struct{}

// WithAudit returns ctx carrying e: the first write made with ctx (or a
// context derived from it) that commits records e in its transaction;
// later writes record nothing more. e.At zero means the write's time.
func WithAudit(ctx context.Context, e AuditEntry) context.Context {
	return context.WithValue(ctx, auditKey{}, &auditSlot{e: e})
}

// AuditRecorded reports whether a write made with ctx has recorded the
// entry WithAudit put in it; false when it put none.
func AuditRecorded(ctx context.Context) bool {
	slot, _ := ctx.Value(auditKey{}).(*auditSlot)
	return slot != nil && slot.done.Load()
}

// auditSlotFrom returns ctx's entry not yet recorded, or nil.
func auditSlotFrom(ctx context.Context) *auditSlot {
	slot, _ := ctx.Value(auditKey{}).(*auditSlot)
	if slot == nil || slot.done.Load() || slot.e.Action == "" {
		return nil
	}
	return slot
}

// insert records the slot's entry in tx (a copy: a transaction that is
// run again inserts it again).
func (a *auditSlot) insert(ctx context.Context, tx *dbTx, now time.Time) error {
	e := a.e
	return insertAudit(ctx, tx, &e, now)
}

func (s *sqlStore) ListAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	query := `SELECT id, at, actor, credential, remote, action, target, detail FROM audit_log`
	var args []any
	if q.Before > 0 {
		query += ` WHERE id < ?`
		args = append(args, q.Before)
	}
	query += ` ORDER BY id DESC`
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	out, err := queryAll(ctx, s.direct(), func(sc rowScanner) (AuditEntry, error) {
		var e AuditEntry
		var at int64
		err := sc.Scan(&e.ID, &at, &e.Actor, &e.Credential, &e.Remote, &e.Action, &e.Target, &e.Detail)
		e.At = fromDB(at)
		return e, err
	}, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: ListAudit: %w", err)
	}
	return out, nil
}

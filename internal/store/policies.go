package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"weft/internal/wire"
)

// PolicyVersion is one accepted policy file. Versions count up from 1;
// the highest is the policy in force.
type PolicyVersion struct {
	Version   int64     `json:"version"`
	Body      []byte    `json:"body,omitempty"`
	Size      int       `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	// Author is the user who set this version, "" for the server's
	// administrator; Credential is how they signed in ("console
	// session", "API key wa…", "admin socket"), as in the audit log.
	// Both are empty for versions set before weft kept them.
	Author     string `json:"author,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// SetBy says who set the version and how, for people: "alice (console
// session)", "server administrator (admin socket)", or "" when not known
// (set before weft kept it).
func (pv PolicyVersion) SetBy() string {
	if pv.Author == "" && pv.Credential == "" {
		return ""
	}
	who := pv.Author
	if who == "" {
		who = "server administrator"
	}
	if pv.Credential == "" {
		return who
	}
	return who + " (" + pv.Credential + ")"
}

func (s *sqlStore) AddPolicy(ctx context.Context, in PolicyVersion) (PolicyVersion, error) {
	pv := PolicyVersion{Body: slices.Clone(in.Body), Size: len(in.Body), CreatedAt: s.now().UTC(),
		Author: in.Author, Credential: in.Credential}
	err := s.write(ctx, func(tx *dbTx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO policies (body, created_at, author, credential) VALUES (?, ?, ?, ?) RETURNING version`,
			string(pv.Body), toDB(pv.CreatedAt), pv.Author, pv.Credential).Scan(&pv.Version)
	})
	if err != nil {
		return PolicyVersion{}, fmt.Errorf("store: AddPolicy: %w", err)
	}
	return pv, nil
}

func (s *sqlStore) GetPolicy(ctx context.Context, version int64) (PolicyVersion, error) {
	q := `SELECT version, body, created_at, author, credential FROM policies ORDER BY version DESC LIMIT 1`
	var args []any
	if version > 0 {
		q = `SELECT version, body, created_at, author, credential FROM policies WHERE version = ?`
		args = append(args, version)
	}
	var pv PolicyVersion
	var body string
	var at int64
	err := s.direct().QueryRowContext(ctx, q, args...).Scan(&pv.Version, &body, &at, &pv.Author, &pv.Credential)
	pv.CreatedAt = fromDB(at)
	if errors.Is(err, sql.ErrNoRows) {
		if version > 0 {
			return PolicyVersion{}, fmt.Errorf("store: %w: policy version %d (see weft admin policy history)", ErrNotFound, version)
		}
		return PolicyVersion{}, fmt.Errorf("store: %w: no policy set", ErrNotFound)
	} else if err != nil {
		return PolicyVersion{}, fmt.Errorf("store: GetPolicy: %w", err)
	}
	pv.Body, pv.Size = []byte(body), len(body)
	return pv, nil
}

func (s *sqlStore) ListPolicies(ctx context.Context) ([]PolicyVersion, error) {
	out, err := queryAll(ctx, s.direct(), func(sc rowScanner) (PolicyVersion, error) {
		var pv PolicyVersion
		var at int64
		err := sc.Scan(&pv.Version, &pv.Size, &at, &pv.Author, &pv.Credential)
		pv.CreatedAt = fromDB(at)
		return pv, err
	}, `SELECT version, LENGTH(body), created_at, author, credential FROM policies ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("store: ListPolicies: %w", err)
	}
	return out, nil
}

func (s *sqlStore) SetNodeTags(ctx context.Context, id wire.NodeID, tags []string) (Node, error) {
	if len(tags) == 0 {
		return Node{}, fmt.Errorf("store: SetNodeTags: %w: give at least one tag (a tagged node belongs to its tags, not a user)", ErrInvalid)
	}
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return Node{}, fmt.Errorf("store: SetNodeTags: %w", err)
		}
	}
	tags = slices.Compact(slices.Sorted(slices.Values(tags)))
	return s.updateNode(ctx, "SetNodeTags", id, func(tx *dbTx, n *Node) error {
		// A tagged node belongs to no user and its key does not expire.
		_, err := tx.ExecContext(ctx, `UPDATE nodes SET user_id = NULL, tags = ?, key_expiry = 0 WHERE id = ?`,
			strings.Join(tags, ","), id)
		return err
	})
}

func (s *sqlStore) AutoApproveRoute(ctx context.Context, id wire.NodeID, p netip.Prefix, rule string) (Node, error) {
	if err := ValidatePrefix(p); err != nil {
		return Node{}, fmt.Errorf("store: AutoApproveRoute: %w", err)
	}
	return s.updateNode(ctx, "AutoApproveRoute", id, func(tx *dbTx, n *Node) error {
		if !slices.Contains(n.AdvertisedRoutes, p) {
			return fmt.Errorf("%w: node %q does not advertise %v", ErrNotFound, n.Name, p)
		}
		_, err := tx.ExecContext(ctx, `UPDATE routes SET approved = TRUE, auto_approved_by = ? WHERE node_id = ? AND prefix = ?`,
			rule, id, p.String())
		return err
	})
}

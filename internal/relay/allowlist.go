package relay

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"weft/internal/key"
)

// A standalone relay learns which node keys may use it from the control
// server: the control server mounts NewAllowListHandler at AllowListPath,
// and the relay's RemoteAuthorizer polls it with a bearer secret both were
// given. The list is small (one key per node), an ETag turns an unchanged
// poll into a 304, and a miss triggers an early (rate-limited) poll so that
// a node registered a moment ago is let in without waiting for the next one.

// ErrSecretRefused: the control server answered the allow list request
// 401 or 403, so this relay's secret is wrong (or the server has none).
// Unlike an unreachable server, waiting does not fix it.
var ErrSecretRefused = errors.New("relay: the control server refused the relay secret")

// AllowListPath is where the control server serves the allow list.
const AllowListPath = "/relay/v1/nodes"

// NodeKeySource lists the node keys allowed to use relays; the control
// server implements it from its store. It must be safe for concurrent use.
type NodeKeySource interface {
	AllowedNodeKeys(ctx context.Context) ([]key.NodePublic, error)
}

// SourceAuthorizer authorizes the keys a NodeKeySource lists, so that a
// control server embedding the relay implements one interface for both
// its own relay and the allow list it serves to standalone ones. It lists
// all keys on every check, which suits the handful of connections a node
// makes; a source with a cheaper single-key lookup can implement
// Authorizer itself.
type SourceAuthorizer struct{ Source NodeKeySource }

var _ Authorizer = SourceAuthorizer{}

// AllowNode reports whether k is among the source's keys.
func (a SourceAuthorizer) AllowNode(ctx context.Context, k key.NodePublic) (bool, error) {
	keys, err := a.Source.AllowedNodeKeys(ctx)
	if err != nil {
		return false, fmt.Errorf("relay: listing allowed node keys: %w", err)
	}
	return slices.Contains(keys, k), nil
}

// allowList is the JSON body of the allow list.
type allowList struct {
	NodeKeys []key.NodePublic `json:"node_keys"`
}

// NewAllowListHandler serves the allow list to relays that present
// "Authorization: Bearer <secret>". An empty secret refuses every request,
// so a control server without a relay secret exposes nothing.
func NewAllowListHandler(src NodeKeySource, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "relay allow list: use GET", http.StatusMethodNotAllowed)
			return
		}
		if secret == "" {
			http.Error(w, "relay allow list: no relay secret is configured on the control server", http.StatusForbidden)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(secret)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="weft-relay"`)
			http.Error(w, "relay allow list: wrong or missing relay secret", http.StatusUnauthorized)
			return
		}
		keys, err := src.AllowedNodeKeys(r.Context())
		if err != nil {
			http.Error(w, "relay allow list: listing node keys failed", http.StatusInternalServerError)
			return
		}
		keys = slices.Clone(keys)
		slices.SortFunc(keys, func(a, b key.NodePublic) int {
			ra, rb := a.Raw32(), b.Raw32()
			return strings.Compare(string(ra[:]), string(rb[:]))
		})
		body := mustJSON(allowList{NodeKeys: keys})
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:16]) + `"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-store")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// RemoteAuthorizerOptions configures a RemoteAuthorizer.
type RemoteAuthorizerOptions struct {
	// ServerURL is the control server's base URL ("https://ctrl:443").
	ServerURL string
	// Secret is the relay secret the control server was given.
	Secret string
	// HTTPClient makes the requests; nil uses a client with a 10s timeout.
	HTTPClient *http.Client
	// Refresh is the polling interval of Run; 0 means 5s.
	Refresh time.Duration
	// MissRefresh is the least time between two polls caused by an unknown
	// key, so that a stream of unknown keys cannot hammer the control
	// server; 0 means 1s.
	MissRefresh time.Duration
	// Logger receives poll failures; nil discards them.
	Logger *slog.Logger
}

// RemoteAuthorizer is an Authorizer backed by the control server's allow
// list. Run keeps it fresh; AllowNode also polls (rate-limited) on a miss.
type RemoteAuthorizer struct {
	opts RemoteAuthorizerOptions
	url  string
	log  *slog.Logger

	fetchMu sync.Mutex // serializes polls; held across the HTTP request

	mu        sync.RWMutex
	keys      map[key.NodePublic]struct{}
	etag      string
	loaded    bool      // a poll has succeeded
	lastErr   error     // of the last poll
	lastFetch time.Time // start of the last poll
}

var _ Authorizer = (*RemoteAuthorizer)(nil)

// NewRemoteAuthorizer checks opts and makes a RemoteAuthorizer; it polls
// nothing until Run or AllowNode.
func NewRemoteAuthorizer(opts RemoteAuthorizerOptions) (*RemoteAuthorizer, error) {
	if opts.ServerURL == "" {
		return nil, errors.New("relay: remote authorizer needs the control server URL")
	}
	if opts.Secret == "" {
		return nil, errors.New("relay: remote authorizer needs the relay secret")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	if opts.MissRefresh <= 0 {
		opts.MissRefresh = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RemoteAuthorizer{
		opts: opts,
		url:  strings.TrimSuffix(opts.ServerURL, "/") + AllowListPath,
		log:  log.With("component", "relay-authorizer"),
		keys: make(map[key.NodePublic]struct{}),
	}, nil
}

// Run polls the allow list every Refresh until ctx ends. Failures are
// logged and the last good list is kept.
func (a *RemoteAuthorizer) Run(ctx context.Context) error {
	t := time.NewTicker(a.opts.Refresh)
	defer t.Stop()
	for {
		if err := a.Refresh(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("polling the relay allow list failed; keeping the last list", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// AllowNode reports whether k is on the allow list, polling first if k is
// unknown and the last poll is older than MissRefresh. It returns an error
// only when no list has ever been loaded.
func (a *RemoteAuthorizer) AllowNode(ctx context.Context, k key.NodePublic) (bool, error) {
	if ok, loaded := a.has(k); ok {
		return true, nil
	} else if loaded {
		a.mu.RLock()
		recent := time.Since(a.lastFetch) < a.opts.MissRefresh
		a.mu.RUnlock()
		if recent {
			return false, nil
		}
	}
	err := a.refreshIfOlder(ctx, a.opts.MissRefresh)
	ok, loaded := a.has(k)
	if !loaded {
		return false, fmt.Errorf("relay: allow list not loaded from the control server: %w", err)
	}
	return ok, nil
}

func (a *RemoteAuthorizer) has(k key.NodePublic) (ok, loaded bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, ok = a.keys[k]
	return ok, a.loaded
}

// Refresh polls the allow list now.
func (a *RemoteAuthorizer) Refresh(ctx context.Context) error {
	return a.refreshIfOlder(ctx, 0)
}

// refreshIfOlder polls unless a poll started less than age ago (perhaps
// while this caller waited for fetchMu) and returns that poll's result.
func (a *RemoteAuthorizer) refreshIfOlder(ctx context.Context, age time.Duration) error {
	a.fetchMu.Lock()
	defer a.fetchMu.Unlock()
	a.mu.RLock()
	last, lastErr, etag := a.lastFetch, a.lastErr, a.etag
	a.mu.RUnlock()
	if age > 0 && time.Since(last) < age {
		return lastErr
	}
	start := time.Now()
	keys, newTag, err := a.fetch(ctx, etag)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastFetch, a.lastErr = start, err
	if err != nil {
		return err
	}
	if keys != nil {
		a.keys, a.etag = keys, newTag
	}
	a.loaded = true
	return nil
}

// fetch gets the list; a nil map with a nil error means "not modified".
func (a *RemoteAuthorizer) fetch(ctx context.Context, etag string) (map[key.NodePublic]struct{}, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
	if err != nil {
		return nil, "", fmt.Errorf("relay: allow list request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+a.opts.Secret)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("relay: fetching allow list: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, etag, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, "", fmt.Errorf("%w (%s: %s): give weft relay the control server's relay secret (DATA-DIR/relay.secret, or its --relay-secret-file)", ErrSecretRefused, resp.Status, strings.TrimSpace(string(msg)))
	default:
		return nil, "", fmt.Errorf("relay: allow list: control server answered %s", resp.Status)
	}
	var l allowList
	// The list is one key per node; 16 MiB is room for well over 100,000.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&l); err != nil {
		return nil, "", fmt.Errorf("relay: decoding allow list: %w", err)
	}
	keys := make(map[key.NodePublic]struct{}, len(l.NodeKeys))
	for _, k := range l.NodeKeys {
		keys[k] = struct{}{}
	}
	return keys, resp.Header.Get("ETag"), nil
}

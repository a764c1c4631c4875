package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAPIKeys(t *testing.T) { forEachStore(t, testAPIKeys) }

func testAPIKeys(t *testing.T, f *fixture) {
	ctx := context.Background()
	live, k, err := f.s.CreateAPIKey(ctx, APIKeyRequest{Expiry: f.clock.Now().Add(90 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(live, k.Prefix+"_") || len(live) != len(k.Prefix)+1+2*apiKeySecretBytes {
		t.Fatalf("secret %q does not extend prefix %q", live, k.Prefix)
	}
	short, _, err := f.s.CreateAPIKey(ctx, APIKeyRequest{Expiry: f.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	revoked, rk, err := f.s.CreateAPIKey(ctx, APIKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.RevokeAPIKey(ctx, rk.Prefix); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour) // short is now expired
	f.reopen()                     // everything below must have been stored

	wrong := live[:len(live)-1] + map[bool]string{true: "1", false: "0"}[live[len(live)-1] == '0']
	for _, c := range []struct {
		name, key string
		ok        bool
	}{
		{"live", live, true},
		{"live with spaces", " " + live + "\n", true},
		{"expired", short, false},
		{"revoked", revoked, false},
		{"wrong secret", wrong, false},
		{"prefix alone", k.Prefix, false},
		{"empty", "", false},
		{"pre-auth key shape", "wk0123456789ab_" + strings.Repeat("0", 48), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := f.s.CheckAPIKey(ctx, c.key)
			if c.ok {
				if err != nil || got.Prefix != k.Prefix || !got.LastUsed.Equal(f.clock.Now()) {
					t.Fatalf("CheckAPIKey = %+v, %v; want key %s used now", got, err, k.Prefix)
				}
				return
			}
			if !errors.Is(err, ErrAPIKeyInvalid) {
				t.Fatalf("CheckAPIKey = %+v, %v; want ErrAPIKeyInvalid", got, err)
			}
		})
	}

	list, err := f.s.ListAPIKeys(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("ListAPIKeys = %+v, %v", list, err)
	}
	if list[0].LastUsed.IsZero() || !list[1].LastUsed.IsZero() || list[2].RevokedAt.IsZero() {
		t.Fatalf("last used / revoked not recorded: %+v", list)
	}
	for _, l := range list {
		if strings.Contains(l.Prefix, "_") {
			t.Fatalf("listing shows a secret: %+v", l)
		}
	}

	if err := f.s.RevokeAPIKey(ctx, live); err != nil { // by full key
		t.Fatal(err)
	}
	if _, err := f.s.CheckAPIKey(ctx, live); !errors.Is(err, ErrAPIKeyInvalid) {
		t.Fatalf("revoked key still checks: %v", err)
	}
	if err := f.s.RevokeAPIKey(ctx, "wa000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown = %v, want ErrNotFound", err)
	}
	if err := f.s.RevokeAPIKey(ctx, "nonsense"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoke nonsense = %v, want ErrInvalid", err)
	}
	if _, _, err := f.s.CreateAPIKey(ctx, APIKeyRequest{Expiry: f.clock.Now().Add(-time.Second)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("past expiry = %v, want ErrInvalid", err)
	}
}

package agent

import (
	"strings"
	"testing"

	"weft/internal/inflight"
)

func TestInFlightFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limit   int64
		want    int
		wantErr string
	}{
		{name: "default limit keeps the default bound", limit: DefaultMemoryLimit, want: inflight.DefaultMax},
		{name: "more buys no more than the default", limit: 1 << 30, want: inflight.DefaultMax},
		{name: "44MiB: half way", limit: 44 << 20, want: 32},
		{name: "48MiB", limit: 48 << 20, want: 42},
		{name: "near the floor", limit: 33 << 20, want: MinInFlight},
		{name: "too small", limit: 16 << 20, wantErr: "below the 32 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := InFlightFor(tc.limit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("InFlightFor = %d, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("InFlightFor = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	if DefaultMemoryLimit != 56<<20 {
		t.Errorf("DefaultMemoryLimit = %d MiB; docs/benchmarks.md says 56 MiB", DefaultMemoryLimit>>20)
	}
}

//go:build linux

package scenario

import "testing"

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"shorter than n", "a\nb\n", 5, "a\nb"},
		{"exactly n", "a\nb\nc", 3, "a\nb\nc"},
		{"longer than n", "a\nb\nc\nd\n", 2, "c\nd"},
		{"empty", "", 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Tail(tc.in, tc.n); got != tc.want {
				t.Fatalf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

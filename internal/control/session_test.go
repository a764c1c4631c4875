package control

import (
	"bytes"
	"testing"
)

func TestCoalesceKeepsOrderAndBytes(t *testing.T) {
	big := bytes.Repeat([]byte{'B'}, coalesceLimit+1)
	small := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	tests := []struct {
		name   string
		q      [][]byte
		writes int
	}{
		{"one", [][]byte{small('a', 3)}, 1},
		{"smalls join", [][]byte{small('a', 3), small('b', 4), small('c', 5)}, 1},
		{"big splits", [][]byte{small('a', 3), big, small('c', 5)}, 3},
		{"limit", [][]byte{small('a', coalesceLimit-1), small('b', 2)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := coalesce(tt.q)
			if len(out) != tt.writes {
				t.Errorf("%d writes, want %d", len(out), tt.writes)
			}
			if !bytes.Equal(bytes.Join(out, nil), bytes.Join(tt.q, nil)) {
				t.Error("bytes or order changed")
			}
		})
	}
}

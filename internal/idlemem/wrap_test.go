package idlemem

import "testing"

func TestScrubTail(t *testing.T) {
	a, b, c := []byte{1}, []byte{2}, []byte{3}
	tests := []struct {
		name string
		arr  [][]byte // the caller's backing array
		n    int      // the batch's length
		want [][]byte
	}{
		{"stale slots past a small batch are cleared", [][]byte{a, b, c}, 1, [][]byte{a, nil, nil}},
		{"a full batch is left alone", [][]byte{a, b, c}, 3, [][]byte{a, b, c}},
		{"an empty batch clears everything", [][]byte{a, b, c}, 0, [][]byte{nil, nil, nil}},
		{"a clean tail stays clean", [][]byte{a, nil, nil}, 1, [][]byte{a, nil, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scrubTail(tt.arr[:tt.n])
			for i := range tt.arr {
				if (tt.arr[i] == nil) != (tt.want[i] == nil) {
					t.Errorf("slot %d = %v, want %v", i, tt.arr[i], tt.want[i])
				}
			}
		})
	}
}

package inflight

import "math/bits"

// table is the set of packets in flight, keyed by their buffer's address:
// an open-addressing hash table with linear probing, for the few hundred
// entries a Bound holds. It does in one probe sequence what a Go map
// needs two lookups for (insert and report the entry it replaced), and
// it shrinks back when it empties after growing, which a Go map never
// does. Not safe for concurrent use: the Bound's mu guards it.
type table struct {
	slots []slot // a power of two long; addr 0 marks an empty slot
	n     int    // entries
	min   int    // the length it starts with and shrinks back to
}

// slot is one entry: a packet in flight.
type slot struct {
	addr uintptr
	e    entry
}

// newTable makes a table for about n entries.
func newTable(n int) table {
	size := 1 << bits.Len(uint(max(4*n, 16)-1))
	return table{slots: make([]slot, size), min: size}
}

// home is where addr's probe sequence starts: the top bits of a
// multiplicative hash, which mixes every bit of the address (buffers sit
// at multiples of their size).
func (t *table) home(addr uintptr) int {
	return int((uint64(addr) * 0x9E3779B97F4A7C15) >> (64 - bits.TrailingZeros(uint(len(t.slots)))))
}

// put puts addr in flight with e and returns the entry it replaced, if
// it was in flight already.
func (t *table) put(addr uintptr, e entry) (old entry, was bool) {
	if 2*(t.n+1) > len(t.slots) {
		t.resize(2 * len(t.slots))
	}
	mask := len(t.slots) - 1
	for i := t.home(addr); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.addr == addr {
			old, s.e = s.e, e
			return old, true
		}
		if s.addr == 0 {
			*s = slot{addr: addr, e: e}
			t.n++
			return entry{}, false
		}
	}
}

// take takes addr out of flight and returns its entry, if it was in.
func (t *table) take(addr uintptr) (entry, bool) {
	if t.n == 0 || addr == 0 {
		return entry{}, false
	}
	mask := len(t.slots) - 1
	i := t.home(addr)
	for ; t.slots[i].addr != addr; i = (i + 1) & mask {
		if t.slots[i].addr == 0 {
			return entry{}, false
		}
	}
	e := t.slots[i].e
	t.n--
	// Backward-shift deletion: move later entries of the run into the
	// hole when their home does not lie between the hole and them, so
	// that every probe sequence stays unbroken without tombstones.
	for j := (i + 1) & mask; t.slots[j].addr != 0; j = (j + 1) & mask {
		h := t.home(t.slots[j].addr)
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot{}
	if t.n == 0 && len(t.slots) > t.min {
		t.slots = make([]slot, t.min)
	}
	return e, true
}

// resize moves the entries into size slots.
func (t *table) resize(size int) {
	old := t.slots
	t.slots, t.n = make([]slot, size), 0
	for _, s := range old {
		if s.addr != 0 {
			t.put(s.addr, s.e)
		}
	}
}

// drop takes out of flight every entry for which gone is true, and
// returns how many.
func (t *table) drop(gone func(entry) bool) int {
	kept := make([]slot, 0, t.n)
	for _, s := range t.slots {
		if s.addr != 0 && !gone(s.e) {
			kept = append(kept, s)
		}
	}
	dropped := t.n - len(kept)
	size := t.min
	for 2*len(kept) > size {
		size *= 2
	}
	t.slots, t.n = make([]slot, size), 0
	for _, s := range kept {
		t.put(s.addr, s.e)
	}
	return dropped
}

// clear empties the table.
func (t *table) clear() {
	t.slots, t.n = make([]slot, t.min), 0
}

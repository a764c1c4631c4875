package store

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSanitizeHostname(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"busan", "busan"},
		{"Busan", "busan"},
		{"Busan's MacBook Pro.local", "busan-s-macbook-pro"},
		{"pc.fukuoka.example", "pc"},
		{"--x--", "x"},
		{"a__b", "a-b"},
		{"", "node"},
		{"...", "node"},
		{"한국", "node"},
		{"부산-laptop", "laptop"},
		{"DESKTOP-7F3K2", "desktop-7f3k2"},
		{strings.Repeat("a", 70), strings.Repeat("a", 63)},
		{strings.Repeat("a", 62) + "-b", strings.Repeat("a", 62)},
		{"0", "node-0"},
		{"1234", "node-1234"},
		{"12-34", "12-34"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			if got := SanitizeHostname(tt.in); got != tt.want {
				t.Fatalf("SanitizeHostname(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestNodeNamesAreNotIDs: no node name is all digits, so "7" and "id:7"
// always mean node 7.
func TestNodeNamesAreNotIDs(t *testing.T) {
	for _, tt := range []struct {
		ref    string
		wantID uint64
		isID   bool
	}{
		{"7", 7, true},
		{"id:7", 7, true},
		{"id:x", 0, false},
		{"id:", 0, false},
		{"busan", 0, false},
		{"node-7", 0, false},
		{"99999999999999999999999", 0, false},
	} {
		t.Run(tt.ref, func(t *testing.T) {
			id, ok := IsNodeIDRef(tt.ref)
			if id != tt.wantID || ok != tt.isID {
				t.Fatalf("IsNodeIDRef(%q) = %d, %v; want %d, %v", tt.ref, id, ok, tt.wantID, tt.isID)
			}
		})
	}
	for _, name := range []string{"1", "007"} {
		if err := ValidateNodeName(name); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "node-"+name) {
			t.Errorf("ValidateNodeName(%q) = %v, want a refusal suggesting node-%s", name, err, name)
		}
	}
	if err := ValidateNodeName("pc1"); err != nil {
		t.Errorf("ValidateNodeName(pc1) = %v", err)
	}
}

func TestUniqueName(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tt := range []struct {
		name string
		base string
		used []string
		want string
	}{
		{"free", "busan", nil, "busan"},
		{"second", "busan", []string{"busan"}, "busan-2"},
		{"third", "busan", []string{"busan", "busan-2"}, "busan-3"},
		{"gap", "busan", []string{"busan", "busan-3"}, "busan-2"},
		{"long", long, []string{long}, long[:61] + "-2"},
		{"long ten", long, []string{long, long[:61] + "-2", long[:61] + "-3", long[:61] + "-4",
			long[:61] + "-5", long[:61] + "-6", long[:61] + "-7", long[:61] + "-8", long[:61] + "-9"}, long[:60] + "-10"},
		{"trailing dash after cut", strings.Repeat("a", 60) + "-bb", []string{strings.Repeat("a", 60) + "-bb"}, strings.Repeat("a", 60) + "-2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := uniqueName(tt.base, func(s string) bool { return slices.Contains(tt.used, s) })
			if got != tt.want {
				t.Fatalf("uniqueName = %q, want %q", got, tt.want)
			}
			if err := ValidateNodeName(got); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseTags(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"tag:server", []string{"tag:server"}, false},
		{"tag:b, tag:a,tag:b,", []string{"tag:a", "tag:b"}, false},
		{"tag:exit-node1", []string{"tag:exit-node1"}, false},
		{"server", nil, true},
		{"tag:", nil, true},
		{"tag:Server", nil, true},
		{"tag:1x", nil, true},
		{"tag:a b", nil, true},
		{"tag:" + strings.Repeat("a", 64), nil, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTags(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseTags(%q) = %v, %v; want ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseTags(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestSplitAuthKey(t *testing.T) {
	full := "wk0123456789ab_" + strings.Repeat("cd", 24)
	for _, tt := range []struct {
		in       string
		prefix   string
		full, ok bool
	}{
		{full, "wk0123456789ab", true, true},
		{" " + full + "\n", "wk0123456789ab", true, true},
		{"wk0123456789ab", "wk0123456789ab", false, true},
		{"wk0123456789AB", "", false, false},
		{"wk0123456789a", "", false, false},
		{full + "00", "", false, false},
		{"xx0123456789ab_" + strings.Repeat("cd", 24), "", false, false},
		{"", "", false, false},
	} {
		t.Run(tt.in, func(t *testing.T) {
			p, f, ok := splitAuthKey(tt.in)
			if p != tt.prefix || f != tt.full || ok != tt.ok {
				t.Fatalf("splitAuthKey(%q) = %q, %v, %v", tt.in, p, f, ok)
			}
		})
	}
}

func FuzzSanitizeHostname(f *testing.F) {
	for _, s := range []string{"busan", "Busan's MacBook Pro.local", "", "-", strings.Repeat("ab-", 40), "한국"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SanitizeHostname(s)
		if err := ValidateNodeName(got); err != nil {
			t.Fatalf("SanitizeHostname(%q) = %q: %v", s, got, err)
		}
		if again := SanitizeHostname(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
		if u := uniqueName(got, func(n string) bool { return n == got }); ValidateNodeName(u) != nil || u == got {
			t.Fatalf("uniqueName(%q) = %q", got, u)
		}
	})
}

func FuzzParseTags(f *testing.F) {
	for _, s := range []string{"tag:a", "tag:b, tag:a", ",,", "tag:", "tag:a,tag:A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := ParseTags(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(tags) {
			t.Fatalf("unsorted %v", tags)
		}
		for _, tag := range tags {
			if ValidateTag(tag) != nil || strings.Contains(tag, ",") {
				t.Fatalf("ParseTags(%q) returned bad tag %q", s, tag)
			}
		}
		// Joining and re-parsing gives the same list.
		again, err := ParseTags(strings.Join(tags, ","))
		if err != nil || !slices.Equal(again, tags) {
			t.Fatalf("round trip %v -> %v, %v", tags, again, err)
		}
	})
}

func FuzzSplitAuthKey(f *testing.F) {
	f.Add("wk0123456789ab_" + strings.Repeat("cd", 24))
	f.Add("wk0123456789ab")
	f.Add("_")
	f.Fuzz(func(t *testing.T, s string) {
		p, full, ok := splitAuthKey(s)
		if !ok {
			return
		}
		if !validKeyPrefix(p) || !strings.Contains(s, p) {
			t.Fatalf("splitAuthKey(%q) = %q", s, p)
		}
		if full && len(strings.TrimSpace(s)) != len(p)+1+2*keySecretBytes {
			t.Fatalf("splitAuthKey(%q) accepted a full key of the wrong length", s)
		}
	})
}

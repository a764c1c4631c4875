package store

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxLabel is the longest DNS label (RFC 1035).
const maxLabel = 63

// ValidateUserName checks a user name: 1-64 characters of a-z 0-9 . _ @ -,
// starting with a letter or digit. Names are lower case so that "Alice" and
// "alice" cannot be two users.
func ValidateUserName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w: user name %q must be 1 to 64 characters", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '@' || c == '-'):
		default:
			return fmt.Errorf("%w: user name %q may hold only a-z, 0-9 and . _ @ - (not first)", ErrInvalid, name)
		}
	}
	return nil
}

// ValidateTag checks one tag: "tag:" then 1-63 characters of a-z 0-9 -,
// starting with a letter.
func ValidateTag(tag string) error {
	name, ok := strings.CutPrefix(tag, "tag:")
	if !ok || name == "" || len(name) > maxLabel {
		return fmt.Errorf("%w: tag %q must look like tag:server (\"tag:\" and 1 to 63 characters)", ErrInvalid, tag)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '-')) {
			return fmt.Errorf("%w: tag %q may hold only a-z, 0-9 and - after \"tag:\", starting with a letter", ErrInvalid, tag)
		}
	}
	return nil
}

// ParseTags parses a comma-separated tag list such as "tag:a, tag:b" as the
// admin CLI takes it. Empty items are ignored; the result is sorted and
// free of duplicates, and nil for an empty list.
func ParseTags(s string) ([]string, error) {
	var tags []string
	for t := range strings.SplitSeq(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if err := ValidateTag(t); err != nil {
			return nil, err
		}
		tags = append(tags, t)
	}
	return normTags(tags), nil
}

// normTags sorts and de-duplicates tags.
func normTags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	tags = slices.Clone(tags)
	slices.Sort(tags)
	return slices.Compact(tags)
}

// SanitizeHostname turns what a machine calls itself into a DNS label:
// lower case a-z 0-9 -, other runs of characters become one '-', no
// leading or trailing '-', at most 63 characters; "node" if nothing is
// left. "Busan's MacBook Pro.local" becomes "busan-s-macbook-pro" (the
// first dot ends the label, as a hostname's first label is its name).
func SanitizeHostname(h string) string {
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i]
	}
	var b strings.Builder
	dash := false
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		default:
			dash = b.Len() > 0
			continue
		}
		if dash {
			b.WriteByte('-')
			dash = false
		}
		b.WriteRune(r)
		if b.Len() >= maxLabel {
			break
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if len(s) > maxLabel {
		s = strings.TrimRight(s[:maxLabel], "-")
	}
	if s == "" {
		return "node"
	}
	if allDigits(s) {
		// An all-digit name would read as a node ID.
		s = "node-" + s
		if len(s) > maxLabel {
			s = s[:maxLabel]
		}
	}
	return s
}

// allDigits reports whether s is non-empty and only 0-9: a node ID as the
// admin CLI takes it, so never a node name.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IsNodeIDRef reports whether ref, as an administrator typed it, names a
// node by ID ("id:7", or all digits as "7", which no node name can be)
// and returns the ID.
func IsNodeIDRef(ref string) (uint64, bool) {
	digits, _ := strings.CutPrefix(ref, "id:")
	if !allDigits(digits) {
		return 0, false
	}
	id, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return id, true
}

// ValidateNodeName checks that name is already a DNS label as
// SanitizeHostname would produce, for renames, where silently changing what
// the administrator typed would surprise.
func ValidateNodeName(name string) error {
	if allDigits(name) {
		return fmt.Errorf("%w: node name %q is all digits, which reads as a node ID (`nodes show 1` would not know which you mean); add a letter, for example %q",
			ErrInvalid, name, "node-"+name)
	}
	if name == "" || SanitizeHostname(name) != name || strings.Contains(name, ".") {
		return fmt.Errorf("%w: node name %q must be a DNS label: 1 to 63 characters of a-z, 0-9 and -, not starting or ending with - (try %q)",
			ErrInvalid, name, SanitizeHostname(name))
	}
	return nil
}

// uniqueName returns base if unused, else base-2, base-3, ... the first
// that is unused (the first "busan" is busan number one, so a second one
// is "busan-2"), shortening base so the result stays a DNS label.
func uniqueName(base string, used func(string) bool) string {
	if !used(base) {
		return base
	}
	for i := 2; ; i++ {
		suffix := fmt.Sprintf("-%d", i)
		b := base
		if len(b)+len(suffix) > maxLabel {
			b = strings.TrimRight(b[:maxLabel-len(suffix)], "-")
		}
		if n := b + suffix; !used(n) {
			return n
		}
	}
}

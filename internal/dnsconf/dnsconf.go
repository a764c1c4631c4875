// Package dnsconf is the tailnet's DNS settings file: its form (HuJSON, so
// an administrator can comment it), its validation, and its translation into
// the wire.DNSConfig every node receives in its map. The control server
// stores the file as the administrator wrote it (comments kept, so `weft
// admin dns get` gives it back) and sends nodes only the parsed result.
//
// Every error Parse returns names the line and column of the offending
// value, so a refused file can be fixed without guessing. See docs/dns.md.
package dnsconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"weft/internal/wire"
)

// DefaultDomain is the tailnet's base domain when the settings name none.
// ".internal" is reserved for private use (ICANN, 2024), so it can never
// collide with a public name.
const DefaultDomain = "weft.internal"

// Limits on what a settings file may hold. They keep the map small and the
// node's resolver cheap; raise them when a tailnet needs more.
const (
	MaxFileSize      = 1 << 20
	maxNameservers   = 16
	maxRoutes        = 256
	maxSearchDomains = 16
	maxExtraRecords  = 4096
	maxTXT           = 255
)

// ErrInvalid is wrapped by every error about a settings file's content.
var ErrInvalid = errors.New("dnsconf: invalid DNS settings")

// Settings is the settings file's form. Pointers and nil slices tell
// "absent" from "empty" where the default differs.
type Settings struct {
	// Domain is the tailnet's base domain; empty means DefaultDomain.
	Domain string `json:"domain,omitempty"`
	// MagicDNS turns the node's resolver and OS DNS changes on; nil means
	// on.
	MagicDNS *bool `json:"magic_dns,omitempty"`
	// Nameservers answer everything that is not a tailnet name or under a
	// split-DNS route: "IP" (port 53) or "IP:port". None means each node
	// forwards to the resolvers its OS had before weft.
	Nameservers []string `json:"nameservers,omitempty"`
	// OverrideLocalDNS makes nodes send every query to weft's resolver
	// even where the OS keeps per-link DNS (systemd-resolved's "~.").
	OverrideLocalDNS bool `json:"override_local_dns,omitempty"`
	// SplitDNS maps a domain suffix to the nameservers for names under it.
	SplitDNS map[string][]string `json:"split_dns,omitempty"`
	// SearchDomains are appended to short names by the OS resolver, after
	// the tailnet domain.
	SearchDomains []string `json:"search_domains,omitempty"`
	// ExtraRecords are answered by every node's resolver.
	ExtraRecords []Record `json:"extra_records,omitempty"`
}

// Record is one extra record as the file gives it.
type Record struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Default returns the settings in effect when none were ever set.
func Default() wire.DNSConfig {
	return wire.DNSConfig{Domain: DefaultDomain, MagicDNS: true}
}

// fieldError is a validation error about the value at a JSON pointer;
// Parse turns the pointer into a line and column.
type fieldError struct {
	ptr string
	msg string
	off int // when > 0, the offset to report instead of the value's
}

func (e *fieldError) Error() string { return e.ptr + ": " + e.msg }

func bad(ptr, format string, args ...any) error {
	return &fieldError{ptr: ptr, msg: fmt.Sprintf(format, args...)}
}

// Parse reads a settings file (HuJSON: JSON with comments and trailing
// commas) and returns the configuration nodes receive. An empty file means
// the defaults. Errors wrap ErrInvalid and name a line and column.
func Parse(src []byte) (wire.DNSConfig, error) {
	if len(src) > MaxFileSize {
		return wire.DNSConfig{}, fmt.Errorf("%w: the file is %d bytes, limit %d", ErrInvalid, len(src), MaxFileSize)
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return Default(), nil
	}
	v, err := hujson.Parse(src)
	if err != nil {
		return wire.DNSConfig{}, fmt.Errorf("%w: %v", ErrInvalid, strings.TrimPrefix(err.Error(), "hujson: "))
	}
	if err := checkKeys(&v); err != nil {
		return wire.DNSConfig{}, locate(src, &v, err)
	}
	// Standardize blanks comments and trailing commas with spaces, so
	// offsets in std are offsets in src.
	std, err := hujson.Standardize(bytes.Clone(src)) // it works in place
	if err != nil {
		return wire.DNSConfig{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var s Settings
	if err := json.Unmarshal(std, &s); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			off := int(te.Offset)
			if at := v.Find("/" + strings.ReplaceAll(te.Field, ".", "/")); at != nil {
				off = at.StartOffset
			}
			line, col := lineCol(src, off)
			return wire.DNSConfig{}, fmt.Errorf("%w: line %d, column %d: %s must be %s, not %s",
				ErrInvalid, line, col, fieldName(te.Field), te.Type, te.Value)
		}
		return wire.DNSConfig{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cfg, err := s.Config()
	if err != nil {
		return wire.DNSConfig{}, locate(src, &v, err)
	}
	return cfg, nil
}

func fieldName(f string) string {
	if f == "" {
		return "the file"
	}
	return strconv.Quote(f)
}

// knownKeys are the fields of Settings and Record, for the unknown-field
// check (which encoding/json reports without a position).
var (
	settingsKeys = []string{"domain", "magic_dns", "nameservers", "override_local_dns", "split_dns", "search_domains", "extra_records"}
	recordKeys   = []string{"name", "type", "value"}
)

// checkKeys refuses members the file format does not have: a misspelt
// "namservers" silently ignored would leave a tailnet without the
// nameservers its administrator meant to set.
func checkKeys(v *hujson.Value) error {
	obj, ok := v.Value.(*hujson.Object)
	if !ok {
		return bad("", "the settings must be a JSON object ({ ... })")
	}
	for _, m := range obj.Members {
		name := m.Name.Value.(hujson.Literal).String()
		if !slices.Contains(settingsKeys, name) {
			return &fieldError{off: m.Name.StartOffset, msg: fmt.Sprintf("unknown setting %q (known: %s)", name, strings.Join(settingsKeys, ", "))}
		}
		if name != "extra_records" {
			continue
		}
		arr, ok := m.Value.Value.(*hujson.Array)
		if !ok {
			continue // the decoder reports the type
		}
		for i, el := range arr.Elements {
			rec, ok := el.Value.(*hujson.Object)
			if !ok {
				continue
			}
			for _, rm := range rec.Members {
				rn := rm.Name.Value.(hujson.Literal).String()
				if !slices.Contains(recordKeys, rn) {
					return &fieldError{off: rm.Name.StartOffset, msg: fmt.Sprintf("unknown record field %q in extra record %d (known: name, type, value)", rn, i+1)}
				}
			}
		}
	}
	return nil
}

// escape makes a JSON pointer token of an object member name (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// locate turns a fieldError into an ErrInvalid error with the line and
// column of the value it names.
func locate(src []byte, v *hujson.Value, err error) error {
	var fe *fieldError
	if !errors.As(err, &fe) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	off := fe.off
	if off <= 0 {
		at := v.Find(fe.ptr)
		if at == nil {
			return fmt.Errorf("%w: %s", ErrInvalid, fe.msg)
		}
		off = at.StartOffset
	}
	line, col := lineCol(src, off)
	return fmt.Errorf("%w: line %d, column %d: %s", ErrInvalid, line, col, fe.msg)
}

// lineCol gives the 1-based line and column of byte offset n.
func lineCol(b []byte, n int) (line, col int) {
	n = min(n, len(b))
	line = 1 + bytes.Count(b[:n], []byte("\n"))
	col = 1 + n - (bytes.LastIndexByte(b[:n], '\n') + 1)
	return line, col
}

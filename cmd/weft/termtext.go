package main

import (
	"fmt"
	"strings"
	"unicode"
)

// termText makes text that a peer or a node chose (host names, OS and
// version strings, messages carrying them) safe to print on a terminal:
// control characters (escape sequences, carriage returns, tabs that would
// shift a table) and the Unicode controls that reorder or hide text are
// shown as Go escapes (\x1b, \u202e) instead of being interpreted.
// Ordinary text is returned as it is.
func termText(s string) string {
	if !strings.ContainsFunc(s, needsEscape) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !needsEscape(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// needsEscape reports whether a terminal could act on r rather than show
// it: C0 and C1 controls, DEL, the bidirectional overrides and isolates,
// and other invisible format characters. An invalid byte decodes as
// U+FFFD, which is shown as it is.
func needsEscape(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

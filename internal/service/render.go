package service

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"
)

// SystemdUnit is the node unit shipped in dist/systemd with its ExecStart
// set to spec's command line, and its ExecStopPost (which restores DNS
// after the daemon stopped, however it stopped) to the same binary and
// state dir.
func SystemdUnit(shipped string, spec Spec) (string, error) {
	re := regexp.MustCompile(`(?m)^ExecStart=.*$`)
	if !re.MatchString(shipped) {
		return "", fmt.Errorf("service: the shipped unit has no ExecStart line")
	}
	line := "ExecStart=" + systemdQuote(spec.Binary) + " daemon"
	for _, a := range spec.Args {
		line += " " + systemdQuote(a)
	}
	unit := re.ReplaceAllLiteralString(shipped, line)
	post := regexp.MustCompile(`(?m)^ExecStopPost=.*$`)
	restore := "ExecStopPost=" + systemdQuote(spec.Binary) + " dns restore"
	if dir, ok := stateDirArg(spec.Args); ok {
		restore += " --state-dir " + systemdQuote(dir)
	}
	return post.ReplaceAllLiteralString(unit, restore), nil
}

// stateDirArg is the value of the last --state-dir in a daemon command
// line, in either form (--state-dir DIR, --state-dir=DIR).
func stateDirArg(args []string) (dir string, ok bool) {
	for i, a := range args {
		if v, found := strings.CutPrefix(a, "--state-dir="); found {
			dir, ok = v, true
		} else if a == "--state-dir" && i+1 < len(args) {
			dir, ok = args[i+1], true
		}
	}
	return dir, ok
}

// systemdQuote quotes a word for an ExecStart line when it needs it.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`)
	return `"` + r.Replace(s) + `"`
}

// LaunchdPlist is the launchd daemon definition for spec: run at load
// (boot), kept alive (restarted whenever it exits), logs in /var/log.
func LaunchdPlist(spec Spec) []byte {
	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + Label + `</string>
	<key>ProgramArguments</key>
	<array>
`)
	for _, a := range append([]string{spec.Binary, "daemon"}, spec.Args...) {
		b.WriteString("\t\t<string>" + esc(a) + "</string>\n")
	}
	b.WriteString(`	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<true/>
	<key>ThrottleInterval</key>
	<integer>2</integer>
	<key>ExitTimeOut</key>
	<integer>15</integer>
	<key>StandardErrorPath</key>
	<string>/var/log/weft.log</string>
	<key>StandardOutPath</key>
	<string>/var/log/weft.log</string>
</dict>
</plist>
`)
	return b.Bytes()
}

// LaunchdPath is where the launchd daemon definition goes.
const LaunchdPath = "/Library/LaunchDaemons/" + Label + ".plist"

// PipeName is the local API's named pipe on Windows.
const PipeName = `\\.\pipe\weft`

// PipeSDDL is the named pipe's security descriptor: owned by SYSTEM, and
// a protected DACL (no inherited entries) that grants full access to
// SYSTEM (SY) and the Administrators group (BA) only, so no other user,
// not even an interactive one, may open the local API.
const PipeSDDL = "O:SYD:P(A;;GA;;;SY)(A;;GA;;;BA)"

// WindowsCommandLine is the service's command line as the service manager
// stores it (each argument quoted where it must be).
func WindowsCommandLine(spec Spec) string {
	parts := []string{windowsQuote(spec.Binary), "daemon"}
	for _, a := range spec.Args {
		parts = append(parts, windowsQuote(a))
	}
	return strings.Join(parts, " ")
}

// windowsQuote quotes one argument by the rules CommandLineToArgvW
// parses: backslashes are literal except before a quote.
func windowsQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	slashes := 0
	for _, c := range s {
		switch c {
		case '\\':
			slashes++
			continue
		case '"':
			b.WriteString(strings.Repeat(`\`, 2*slashes+1))
			b.WriteRune('"')
		default:
			b.WriteString(strings.Repeat(`\`, slashes))
			b.WriteRune(c)
		}
		slashes = 0
	}
	b.WriteString(strings.Repeat(`\`, 2*slashes))
	b.WriteByte('"')
	return b.String()
}

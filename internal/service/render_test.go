package service

import (
	"encoding/xml"
	"regexp"
	"slices"
	"strings"
	"testing"

	"weft/dist"
)

func TestSystemdUnitKeepsTheShippedUnit(t *testing.T) {
	state, sock := Defaults("linux", func(string) string { return "" })
	got, err := SystemdUnit(dist.SystemdNode, Spec{Binary: "/usr/local/bin/weft", Args: []string{"--state-dir", state, "--socket", sock}})
	if err != nil {
		t.Fatal(err)
	}
	if got != dist.SystemdNode {
		t.Errorf("the unit for the default command line differs from dist/systemd/weft.service:\n%s", got)
	}
	got, err = SystemdUnit(dist.SystemdNode, Spec{Binary: "/opt/weft dir/weft", Args: []string{"--tun=userspace-networking", "--socks5-server", "127.0.0.1:1055", "--x", "100%$"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `ExecStart="/opt/weft dir/weft" daemon --tun=userspace-networking --socks5-server 127.0.0.1:1055 --x "100%%$$"` + "\n"
	if !strings.Contains(got, "\n"+want) || strings.Count(got, "ExecStart=") != 1 {
		t.Errorf("unit does not have the one line %q:\n%s", want, got)
	}
	got, err = SystemdUnit(dist.SystemdNode, Spec{Binary: "/opt/weft dir/weft", Args: []string{"--state-dir", "/a", "--state-dir=/srv/weft state"}})
	if err != nil {
		t.Fatal(err)
	}
	want = `ExecStopPost="/opt/weft dir/weft" dns restore --state-dir "/srv/weft state"` + "\n"
	if !strings.Contains(got, "\n"+want) || strings.Count(got, "ExecStopPost=") != 1 {
		t.Errorf("unit does not restore DNS with the daemon's binary and state dir, %q:\n%s", want, got)
	}
	if _, err := SystemdUnit("[Service]\n", Spec{}); err == nil {
		t.Error("a unit without ExecStart was accepted")
	}
}

func TestLaunchdPlist(t *testing.T) {
	state, sock := Defaults("darwin", func(string) string { return "" })
	b := LaunchdPlist(Spec{Binary: "/usr/local/bin/weft", Args: []string{"--state-dir", state, "--socket", sock, "--x", "<&>"}})
	var doc struct {
		Dict struct {
			Inner []byte `xml:",innerxml"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the property list is not XML: %v\n%s", err, b)
	}
	// Walk the dict as key/value pairs.
	dec := xml.NewDecoder(strings.NewReader(string(doc.Dict.Inner)))
	vals := map[string][]string{}
	var key, elem string
	var inArray bool
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case xml.StartElement:
			elem = v.Name.Local
			if elem == "array" {
				inArray = true
			}
			if elem == "true" {
				vals[key] = []string{"true"}
			}
		case xml.EndElement:
			if v.Name.Local == "array" {
				inArray = false
			}
		case xml.CharData:
			s := string(v)
			if strings.TrimSpace(s) == "" {
				continue
			}
			if elem == "key" {
				key = s
			} else if inArray {
				vals[key] = append(vals[key], s)
			} else {
				vals[key] = []string{s}
			}
		}
	}
	wantArgs := []string{"/usr/local/bin/weft", "daemon", "--state-dir", "/Library/Application Support/weft", "--socket", "/var/run/weft/weft.sock", "--x", "<&>"}
	if !slices.Equal(vals["ProgramArguments"], wantArgs) {
		t.Errorf("ProgramArguments = %q, want %q", vals["ProgramArguments"], wantArgs)
	}
	for _, k := range []string{"RunAtLoad", "KeepAlive"} {
		if !slices.Equal(vals[k], []string{"true"}) {
			t.Errorf("%s = %q, want true (start at boot, restart after exit)", k, vals[k])
		}
	}
	if vals["Label"][0] != Label {
		t.Errorf("Label = %q", vals["Label"])
	}
}

func TestWindowsCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--state-dir", `C:\ProgramData\weft`}, `weft.exe daemon --state-dir C:\ProgramData\weft`},
		{[]string{"--state-dir", `C:\Program Data\weft\`}, `weft.exe daemon --state-dir "C:\Program Data\weft\\"`},
		{[]string{"--x", `say "hi"`}, `weft.exe daemon --x "say \"hi\""`},
		{[]string{"--x", ``}, `weft.exe daemon --x ""`},
	}
	for _, c := range cases {
		if got := WindowsCommandLine(Spec{Binary: "weft.exe", Args: c.args}); got != c.want {
			t.Errorf("WindowsCommandLine(%q) = %s, want %s", c.args, got, c.want)
		}
	}
}

// TestPipeSDDL: the local API's pipe is owned by SYSTEM and its protected
// DACL allows SYSTEM and Administrators and nobody else.
func TestPipeSDDL(t *testing.T) {
	if !strings.HasPrefix(PipeSDDL, "O:SY") {
		t.Errorf("pipe owner is not SYSTEM: %s", PipeSDDL)
	}
	if !strings.Contains(PipeSDDL, "D:P(") {
		t.Errorf("the DACL is not protected from inheritance: %s", PipeSDDL)
	}
	aces := regexp.MustCompile(`\(([^)]*)\)`).FindAllStringSubmatch(PipeSDDL, -1)
	var allowed []string
	for _, a := range aces {
		f := strings.Split(a[1], ";")
		if len(f) != 6 || f[0] != "A" {
			t.Fatalf("unexpected ACE %q", a[1])
		}
		allowed = append(allowed, f[5])
	}
	slices.Sort(allowed)
	if !slices.Equal(allowed, []string{"BA", "SY"}) {
		t.Errorf("pipe allows %q, want exactly Administrators (BA) and SYSTEM (SY)", allowed)
	}
}

func TestDefaults(t *testing.T) {
	env := func(k string) string {
		if k == "ProgramData" {
			return `D:\PD`
		}
		return ""
	}
	for _, c := range []struct{ goos, state, sock string }{
		{"linux", "/var/lib/weft-node", "/run/weft/weft.sock"},
		{"darwin", "/Library/Application Support/weft", "/var/run/weft/weft.sock"},
		{"windows", `D:\PD\weft`, `\\.\pipe\weft`},
	} {
		state, sock := Defaults(c.goos, env)
		if state != c.state || sock != c.sock {
			t.Errorf("Defaults(%s) = %q, %q; want %q, %q", c.goos, state, sock, c.state, c.sock)
		}
	}
	if state, _ := Defaults("windows", func(string) string { return "" }); state != `C:\ProgramData\weft` {
		t.Errorf("without ProgramData: %q", state)
	}
}

package dnsconf

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"weft/internal/wire"
)

func TestParse(t *testing.T) {
	ns := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	tests := []struct {
		name string
		src  string
		want wire.DNSConfig
	}{
		{"empty file is the defaults", "", Default()},
		{"empty object is the defaults", "{}", Default()},
		{"everything, with comments and trailing commas", `{
	// the tailnet's own names
	"domain": "Corp.Weft.Internal.",
	"magic_dns": true,
	"nameservers": ["198.51.100.53", "[2001:db8::53]:5353",],
	"override_local_dns": true,
	"split_dns": {"corp.example": ["198.51.100.80:53"]},
	"search_domains": ["corp.example"],
	"extra_records": [
		{"name": "db.corp.weft.internal", "type": "a", "value": "100.64.0.9"},
		{"name": "www.corp.weft.internal", "type": "CNAME", "value": "db.corp.weft.internal."},
		{"name": "txt.corp.weft.internal", "type": "TXT", "value": "hello"},
	],
}`, wire.DNSConfig{
			Domain: "corp.weft.internal", MagicDNS: true,
			Nameservers:      []netip.AddrPort{ns("198.51.100.53:53"), ns("[2001:db8::53]:5353")},
			OverrideLocalDNS: true,
			Routes:           map[string][]netip.AddrPort{"corp.example": {ns("198.51.100.80:53")}},
			SearchDomains:    []string{"corp.example"},
			ExtraRecords: []wire.DNSRecord{
				{Name: "db.corp.weft.internal", Type: "A", Value: "100.64.0.9"},
				{Name: "www.corp.weft.internal", Type: "CNAME", Value: "db.corp.weft.internal"},
				{Name: "txt.corp.weft.internal", Type: "TXT", Value: "hello"},
			},
		}},
		{"magic dns off", `{"magic_dns": false}`, wire.DNSConfig{Domain: DefaultDomain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(tt.src)
			got, err := Parse(src)
			if err != nil {
				t.Fatal(err)
			}
			if string(src) != tt.src {
				t.Fatalf("Parse changed its input to %q", src)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // substring of the error, with its position
	}{
		{"syntax", "{\n  \"domain\": \"a.b\"\n  \"magic_dns\": true}", "line 3, column 3"},
		{"not an object", `["a"]`, "line 1, column 1: the settings must be a JSON object"},
		{"unknown key", "{\n\"namservers\": []}", `line 2, column 1: unknown setting "namservers"`},
		{"unknown record field", "{\"extra_records\": [\n {\"name\": \"a.b\", \"typ\": \"A\"}]}", `line 2, column 18: unknown record field "typ"`},
		{"wrong type", "{\n  \"magic_dns\": \"yes\"}", `line 2, column 16: "magic_dns" must be bool`},
		{"bad domain", "{\"domain\": \"bad_.-x\"}", "line 1, column 12: domain:"},
		{"single-label domain", `{"domain": "internal"}`, "at least two labels"},
		{"bad nameserver", "{\"nameservers\": [\n  \"1.2.3.4\",\n  \"nope\"]}", `line 3, column 3: nameserver "nope"`},
		{"own resolver", `{"nameservers": ["100.100.100.100"]}`, "weft's own resolver"},
		{"route under tailnet domain", `{"split_dns": {"x.weft.internal": ["1.2.3.4"]}}`, "under the tailnet domain"},
		{"route without servers", `{"split_dns": {"corp.example": []}}`, "needs 1 to 16 nameservers"},
		{"A with IPv6", `{"extra_records": [{"name": "a.b", "type": "A", "value": "2001:db8::1"}]}`, "not an IPv4 address"},
		{"unknown type", `{"extra_records": [{"name": "a.b", "type": "MX", "value": "x"}]}`, `type "MX" is not one of`},
		{"long TXT", `{"extra_records": [{"name": "a.b", "type": "TXT", "value": "` + strings.Repeat("x", 256) + `"}]}`, "TXT value is 256 bytes"},
		{"too big", "{" + strings.Repeat(" ", MaxFileSize) + "}", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatal("Parse accepted a bad file")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"domain": "a.b", "nameservers": ["1.2.3.4"], "split_dns": {"c.d": ["[::1]:53"]}}`))
	f.Add([]byte(`{"extra_records": [{"name": "x.y", "type": "TXT", "value": "v"},], // c
}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := string(b)
		cfg, err := Parse(b)
		if string(b) != orig {
			t.Fatal("Parse changed its input")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if _, err := CanonicalName(cfg.Domain); err != nil {
			t.Fatalf("accepted domain %q: %v", cfg.Domain, err)
		}
	})
}

package osdns

import (
	"net/netip"
	"reflect"
	"regexp"
	"testing"
)

func TestNRPTRules(t *testing.T) {
	ns := []netip.Addr{netip.MustParseAddr("100.100.100.100"), netip.MustParseAddr("fd7a:115c:a1e0::53")}
	guid := regexp.MustCompile(`^\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$`)
	tests := []struct {
		name      string
		cfg       Config
		wantNames []string
	}{
		{"split", Config{Nameservers: ns, MatchDomains: []string{"weft.internal", "~Corp.Example."}}, []string{".corp.example", ".weft.internal"}},
		{"search domains when no match domains", Config{Nameservers: ns, SearchDomains: []string{"weft.internal"}}, []string{".weft.internal"}},
		{"every name", Config{Nameservers: ns, All: true, MatchDomains: []string{"weft.internal"}}, []string{"."}},
		{"no nameservers, no rule", Config{MatchDomains: []string{"weft.internal"}}, nil},
		{"no domains, no rule", Config{Nameservers: ns}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := nrptRules(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantNames == nil {
				if len(rules) != 0 {
					t.Fatalf("rules %+v, want none", rules)
				}
				return
			}
			if len(rules) != 1 {
				t.Fatalf("%d rules, want 1", len(rules))
			}
			r := rules[0]
			if !reflect.DeepEqual(r.Name, tt.wantNames) {
				t.Errorf("names %v, want %v", r.Name, tt.wantNames)
			}
			if r.Servers != "100.100.100.100; fd7a:115c:a1e0::53" {
				t.Errorf("servers %q", r.Servers)
			}
			if !guid.MatchString(r.Key) || !isWeftNRPTKey(r.Key) {
				t.Errorf("key %q is not a weft GUID-shaped key", r.Key)
			}
			again, _ := nrptRules(tt.cfg)
			if again[0].Key != r.Key {
				t.Errorf("key not stable: %q then %q", r.Key, again[0].Key)
			}
		})
	}
	if _, err := nrptRules(Config{Nameservers: ns, MatchDomains: []string{"../x"}}); err == nil {
		t.Error("a domain with a path accepted")
	}
	if isWeftNRPTKey("{3e7b2f4a-0000-0000-0000-000000000000}") {
		t.Error("another program's rule taken for weft's")
	}
}

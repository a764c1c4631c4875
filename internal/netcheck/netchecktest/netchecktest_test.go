package netchecktest

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, out, before string
		wantErr           bool
		udp               bool
		varies            *bool
	}{
		{"report alone", `{"udp": true, "mapping_varies_by_dest_ip": false}`, "", false, true, new(bool)},
		{"log lines first", "level=INFO msg=probing\n{\"udp\": false, \"mapping_varies_by_dest_ip\": null}", "level=INFO msg=probing\n", false, false, nil},
		{"no report", "netcheck: no relay map", "", true, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, before, err := Parse([]byte(tc.out))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Parse: %v, want error %v", err, tc.wantErr)
			}
			if string(before) != tc.before || r.UDP != tc.udp || (r.MappingVariesByDestIP == nil) != (tc.varies == nil) {
				t.Fatalf("Parse = %+v, before %q", r, before)
			}
		})
	}
}

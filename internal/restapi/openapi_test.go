package restapi

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"weft/internal/adminapi"
	"weft/internal/nodelogin"
	"weft/internal/store"
	"weft/internal/tstest"
)

// openAPIDoc is the part of docs/openapi.json the drift checks read.
type openAPIDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

func readOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	b, err := os.ReadFile("../../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var d openAPIDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	return d
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.json from drifting: every
// endpoint the REST API serves is documented, every documented operation
// is served (an admin's request to it does not fall through to "no such
// endpoint"), and every documented schema has exactly the JSON fields of
// the Go type it describes.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	d := readOpenAPI(t)
	var documented []string
	for path, ops := range d.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" /v1"+path)
		}
	}
	var served []string
	for _, rt := range adminapi.Routes() {
		if !rt.Local {
			served = append(served, rt.Method+" "+rt.Path)
		}
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, p := range served {
		if !slices.Contains(documented, p) {
			t.Errorf("%s is served but not in docs/openapi.json", p)
		}
	}
	e := newEnv(t)
	for _, p := range documented {
		if !slices.Contains(served, p) {
			t.Errorf("%s is in docs/openapi.json but not served", p)
		}
		method, path, _ := strings.Cut(p, " ")
		path = strings.NewReplacer("{node}", e.nodes[2], "{name}", "nosuch", "{prefix}", e.bobAuth, "{code}", "nosuch").Replace(path)
		code, body, _ := e.do(method, "/api"+path, e.live, "{}")
		if code == 404 && strings.Contains(body, "no such endpoint") {
			t.Errorf("%s documented but answers %d %s", p, code, body)
		}
	}

	types := map[string]any{
		"ErrorReply": &adminapi.ErrorReply{}, "User": &store.User{}, "NameRequest": &adminapi.NameRequest{},
		"RoleRequest": &adminapi.RoleRequest{}, "AuthKey": &store.AuthKey{}, "KeyRequest": &adminapi.KeyRequest{},
		"KeyReply": &adminapi.KeyReply{}, "Node": &adminapi.Node{}, "Route": &store.Route{},
		"RoutesRequest": &adminapi.RoutesRequest{}, "TagsRequest": &adminapi.TagsRequest{},
		"PolicyRequest": &adminapi.PolicyRequest{}, "PolicyReply": &adminapi.PolicyReply{},
		"PolicyVersion": &store.PolicyVersion{}, "DNSRequest": &adminapi.DNSRequest{}, "DNSReply": &adminapi.DNSReply{},
		"HealthReply": &adminapi.HealthReply{}, "SamplesReply": &adminapi.SamplesReply{}, "AuditEntry": &store.AuditEntry{},
		"Login": &nodelogin.Login{}, "ApproveRequest": &adminapi.ApproveRequest{},
	}
	for name, v := range types {
		s, ok := d.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s is not in docs/openapi.json", name)
			continue
		}
		tstest.Fill(v)
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]json.RawMessage
		json.Unmarshal(b, &fields)
		got, want := slices.Sorted(maps.Keys(s.Properties)), slices.Sorted(maps.Keys(fields))
		if !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %v; the Go type has %v", name, got, want)
		}
	}
	for name := range d.Components.Schemas {
		if _, ok := types[name]; !ok {
			t.Errorf("schema %s is not tied to a Go type in this test", name)
		}
	}
}

// TestOpenAPINodeListParameters: the query parameters docs/openapi.json
// gives GET /nodes are exactly those the node list reads, and every
// documented sort order is served.
func TestOpenAPINodeListParameters(t *testing.T) {
	d := readOpenAPI(t)
	var op struct {
		Parameters []struct {
			Name   string `json:"name"`
			Schema struct {
				Enum []string `json:"enum"`
			} `json:"schema"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(d.Paths["/nodes"]["get"], &op); err != nil {
		t.Fatal(err)
	}
	yes := true
	full := adminapi.NodeQuery{User: "u", Tag: "t", Name: "n", Search: "s", Online: &yes, Sort: "name", Desc: true, After: 1, Offset: 1, Limit: 1}
	want := slices.Sorted(maps.Keys(full.Values()))
	var got, sorts []string
	for _, p := range op.Parameters {
		got = append(got, p.Name)
		if p.Name == "sort" {
			sorts = p.Schema.Enum
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("docs/openapi.json documents GET /nodes parameters %v; the node list reads %v", got, want)
	}
	if len(sorts) == 0 {
		t.Fatal("docs/openapi.json lists no sort orders for GET /nodes")
	}
	e := newEnv(t)
	for _, s := range sorts {
		if code, body, h := e.do("GET", "/api/v1/nodes?limit=2&sort="+s, e.live, ""); code != 200 || h.Get(adminapi.TotalHeader) != "3" {
			t.Errorf("sort=%s documented but answers %d %s (total %q)", s, code, body, h.Get(adminapi.TotalHeader))
		}
	}
}

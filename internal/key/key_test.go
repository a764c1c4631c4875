package key

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	priv := NewNode()
	pub := priv.Public()
	if pub.IsZero() || priv.IsZero() {
		t.Fatal("new key is zero")
	}
	b, err := json.Marshal(struct{ K NodePublic }{pub})
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ K NodePublic }
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.K != pub {
		t.Fatalf("round trip: got %v want %v", got.K, pub)
	}
	pt, _ := priv.MarshalText()
	var p2 NodePrivate
	if err := p2.UnmarshalText(pt); err != nil || p2 != priv {
		t.Fatalf("private round trip: %v", err)
	}
}

func TestKindsDoNotMix(t *testing.T) {
	d := NewDisco().Public()
	if _, err := ParsePublic[NodeKind](d.String()); err == nil {
		t.Fatal("a disco key parsed as a node key")
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "nodekey:", "nodekey:zz", "nodekey:" + string(bytes.Repeat([]byte("a"), 63))} {
		if _, err := ParsePublic[NodeKind](s); err == nil {
			t.Errorf("ParsePublic(%q) succeeded", s)
		}
	}
}

func TestPublicMatchesX25519(t *testing.T) {
	a, b := NewDisco(), NewDisco()
	if a.Public() == b.Public() {
		t.Fatal("two new keys share a public half")
	}
}

func FuzzParsePublic(f *testing.F) {
	f.Add(NewNode().Public().String())
	f.Add("nodekey:00")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublic[NodeKind](s)
		if err != nil {
			return
		}
		if k.String() != s && k.String() != string(bytes.ToLower([]byte(s))) {
			t.Fatalf("parsed %q but prints %q", s, k.String())
		}
	})
}

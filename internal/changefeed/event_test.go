package changefeed

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"weft/internal/wire"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error // nil: parses
	}{
		{"node", `{"v":1,"origin":"a1","kind":"node","nodes":[3,4]}`, nil},
		{"policy", `{"v":1,"origin":"a1","kind":"policy"}`, nil},
		{"gone", `{"v":1,"origin":"a1","kind":"gone","server":"b2"}`, nil},
		{"gone without server", `{"v":1,"origin":"a1","kind":"gone"}`, ErrInvalid},
		{"gone with bad server", `{"v":1,"origin":"a1","kind":"gone","server":"b 2"}`, ErrInvalid},
		{"gone with nodes", `{"v":1,"origin":"a1","kind":"gone","server":"b2","nodes":[1]}`, ErrInvalid},
		{"server on another kind", `{"v":1,"origin":"a1","kind":"offline","server":"b2","nodes":[1]}`, ErrInvalid},
		{"unknown field ignored", `{"v":1,"origin":"a1","kind":"dns","later":true}`, nil},
		{"newer version", `{"v":2,"origin":"a1","kind":"dns"}`, ErrVersion},
		{"no version", `{"origin":"a1","kind":"dns"}`, ErrVersion},
		{"unknown kind", `{"v":1,"origin":"a1","kind":"secret"}`, ErrInvalid},
		{"resync is not sent", `{"v":1,"origin":"a1","kind":"resync"}`, ErrInvalid},
		{"node kind without nodes", `{"v":1,"origin":"a1","kind":"node"}`, ErrInvalid},
		{"policy with nodes", `{"v":1,"origin":"a1","kind":"policy","nodes":[1]}`, ErrInvalid},
		{"zero id", `{"v":1,"origin":"a1","kind":"removed","nodes":[0]}`, ErrInvalid},
		{"negative id", `{"v":1,"origin":"a1","kind":"removed","nodes":[-5]}`, ErrInvalid},
		{"bad origin", `{"v":1,"origin":"a b","kind":"dns"}`, ErrInvalid},
		{"empty origin", `{"v":1,"origin":"","kind":"dns"}`, ErrInvalid},
		{"trailing data", `{"v":1,"origin":"a1","kind":"dns"}{}`, ErrInvalid},
		{"not JSON", `node 5`, ErrInvalid},
		{"too large", `{"v":1,"origin":"a1","kind":"dns","x":"` + strings.Repeat("x", MaxSize) + `"}`, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if tt.want == nil && err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Parse error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestSplitFits checks that the largest event Split makes fits a NOTIFY
// payload and parses back whole.
func TestSplitFits(t *testing.T) {
	ids := make([]wire.NodeID, 2*MaxNodes+1)
	for i := range ids {
		ids[i] = wire.NodeID(1<<62 + i)
	}
	evs := Split(strings.Repeat("o", maxOriginID), KindRuntime, ids)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	n := 0
	for _, ev := range evs {
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxSize {
			t.Fatalf("event of %d bytes, more than %d", len(b), MaxSize)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		n += len(back.Nodes)
	}
	if n != len(ids) {
		t.Fatalf("%d ids came back, want %d", n, len(ids))
	}
	if got := Split("o", KindDNS, nil); len(got) != 1 || got[0].Kind != KindDNS {
		t.Fatalf("Split of a DNS change: %+v", got)
	}
	if got := Split("o", KindNode, nil); len(got) != 0 {
		t.Fatalf("Split of no nodes: %+v", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"v":1,"origin":"a1","kind":"node","nodes":[3,4]}`))
	f.Add([]byte(`{"v":1,"origin":"a1","kind":"policy"}`))
	f.Add([]byte(`{"v":1,"origin":"x","kind":"online","nodes":[9223372036854775807]}`))
	f.Add([]byte(`{"v":1,"origin":"a1","kind":"gone","server":"b2"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Parse(b)
		if err != nil {
			return
		}
		// What parses re-encodes to an event that parses the same.
		out, err := ev.Marshal()
		if err != nil {
			t.Fatalf("parsed event does not marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-encoded event does not parse: %v", err)
		}
		if again.Kind != ev.Kind || again.Origin != ev.Origin || len(again.Nodes) != len(ev.Nodes) || again.Server != ev.Server {
			t.Fatalf("round trip changed the event: %+v -> %+v", ev, again)
		}
	})
}

// collect runs f's Run and returns a channel of what it delivers.
func collect(t *testing.T, f Feed) <-chan Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan Event, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, func(evs []Event) {
			for _, ev := range evs {
				ch <- ev
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event delivered")
		return Event{}
	}
}

func TestHubDeliversToOthersOnly(t *testing.T) {
	h := NewHub()
	a, b := h.Feed(), h.Feed()
	chA, chB := collect(t, a), collect(t, b)
	ctx := context.Background()
	if err := a.Publish(ctx, Event{Kind: KindNode, Nodes: []wire.NodeID{7}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, Event{Kind: KindDNS}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, chB); ev.Kind != KindNode || ev.Origin != a.Origin() || ev.Nodes[0] != 7 {
		t.Fatalf("b got %+v", ev)
	}
	if ev := next(t, chA); ev.Kind != KindDNS || ev.Origin != b.Origin() {
		t.Fatalf("a got %+v", ev)
	}
	select {
	case ev := <-chA:
		t.Fatalf("a got a second event %+v (its own?)", ev)
	case <-time.After(50 * time.Millisecond):
	}
	if err := a.Publish(ctx, Event{Kind: KindNode}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("publishing a node event without nodes: %v", err)
	}
}

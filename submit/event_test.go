package submit

import (
	"context"
	"slices"
	"strings"
	"testing"

	"mxgate/event"
	"mxgate/internal/eventtest"
)

// TestSubmitEvents: a local submission is Accepted from "local"; a
// rejected recipient fails and is bounced.
func TestSubmitEvents(t *testing.T) {
	f := newFixture(t)
	rec, bus := eventtest.New()
	o := f.options()
	o.Bus, o.Recipients = bus, []string{"bob@example.test", "carol@elsewhere.test"}
	m, err := Submit(context.Background(), o, strings.NewReader("Subject: hello\nMessage-ID: <m1@client>\n\nhi\n"))
	if err != nil {
		t.Fatal(err)
	}
	acc := rec.Of(event.Accepted)
	if len(acc) != 2 {
		t.Fatalf("Accepted events %+v, want the message's and its bounce's", acc)
	}
	a := acc[0]
	if a.ID != string(m.ID) || a.Source != "local" || a.Sender != "alice@mx.example.test" || !slices.Equal(a.Recipients, []string{"bob@example.test"}) ||
		a.Size != m.Size || a.Subject != "hello" || a.MessageID != "m1@client" || a.AuthUser != "alice" || a.Action != "accept" {
		t.Errorf("Accepted %+v", a)
	}
	if b := acc[1]; b.ID != string(m.Bounce) || b.Source != "bounce" || !slices.Equal(b.Recipients, []string{"alice@mx.example.test"}) {
		t.Errorf("the bounce's Accepted %+v", b)
	}
	d := rec.Of(event.Delivery)
	bo := rec.Of(event.Bounce)
	if len(d) != 1 || d[0].Recipient != "carol@elsewhere.test" || d[0].Outcome != event.Failed ||
		len(bo) != 1 || bo[0].Parent != string(m.ID) || bo[0].ID != string(m.Bounce) {
		t.Errorf("Delivery %+v, Bounce %+v", d, bo)
	}
}

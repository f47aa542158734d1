package admin

import (
	"context"
	"slices"
	"testing"
	"time"

	"mxgate/event"
	"mxgate/internal/eventtest"
)

// TestAdminEvents: each action is an Admin event naming the message, the
// action and who did it (with the reason given); a removal also completes
// the message, and -Mg bounces it.
func TestAdminEvents(t *testing.T) {
	q, _ := newQueue(t)
	rec, bus := eventtest.New()
	q.Bus, q.Reason, q.Hostname = bus, "ticket 42", "mx.example.test"
	id := add(t, q, "alice@example.test", time.Minute, "body\n", "bob@example.test")
	other := add(t, q, "alice@example.test", time.Minute, "body\n", "carol@example.test")
	steps := []struct {
		action string
		op     func() error
	}{
		{"freeze", func() error { _, err := q.Freeze(string(id)); return err }},
		{"thaw", func() error { _, err := q.Thaw(string(id)); return err }},
		{"deliver", func() error { _, err := q.MakeDue(string(id)); return err }},
		{"add-recipient", func() error { _, err := q.AddRecipients(string(id), []string{"dave@example.test"}); return err }},
		{"edit-sender", func() error { _, err := q.EditSender(string(id), "eve@example.test"); return err }},
		{"remove", func() error { _, err := q.Remove(string(id)); return err }},
		{"giveup", func() error { _, err := q.GiveUp(context.Background(), string(other)); return err }},
	}
	for _, s := range steps {
		if err := s.op(); err != nil {
			t.Fatalf("%s: %v", s.action, err)
		}
	}
	var actions []string
	for _, e := range rec.Of(event.Admin) {
		if e.User != "admin" || !(e.ID == string(id) || e.ID == string(other) && e.Action == "giveup") {
			t.Errorf("Admin event %+v: wrong user or message", e)
		}
		if e.Reason != "ticket 42" && e.Reason != "ticket 42; <dave@example.test>" && e.Reason != "ticket 42; <eve@example.test>" {
			t.Errorf("Admin event %s: Reason %q", e.Action, e.Reason)
		}
		actions = append(actions, e.Action)
	}
	want := []string{"freeze", "thaw", "deliver", "add-recipient", "edit-sender", "remove", "giveup"}
	if !slices.Equal(actions, want) {
		t.Errorf("Admin actions %q, want %q", actions, want)
	}
	var completed []string
	for _, e := range rec.Of(event.Completed) {
		completed = append(completed, e.ID)
	}
	if !slices.Equal(completed, []string{string(id), string(other)}) {
		t.Errorf("Completed %q, want %s and %s", completed, id, other)
	}
	b := rec.Of(event.Bounce)
	d := rec.Of(event.Delivery)
	if len(b) != 1 || b[0].Parent != string(other) || b[0].Recipient != "alice@example.test" ||
		len(d) != 1 || d[0].Recipient != "carol@example.test" || d[0].Outcome != event.Failed {
		t.Errorf("-Mg: Bounce %+v, Delivery %+v", b, d)
	}
}

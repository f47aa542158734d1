package queue

import (
	"context"
	"slices"
	"testing"

	"mxgate/deliver"
	"mxgate/event"
	"mxgate/internal/eventtest"
	"mxgate/route"
)

// TestEvents checks what metrics and tracking see of one attempt: a
// Delivery per recipient with its outcome, the bounce of the failed one
// (Accepted from "bounce", then Bounce), and Completed.
func TestEvents(t *testing.T) {
	rec, bus := eventtest.New()
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"dave@down.test": failedWith("550 5.1.1 no such user"),
		"erin@down.test": {Status: deliver.Deferred, Host: testHost, Err: "Connection refused"},
	}}
	e := newEnv(t, tr, Options{Hostname: hostname, Bus: bus})
	id := e.submit([]string{"bob@down.test", "dave@down.test", "erin@down.test"}, nil)
	e.r.RunOnce(context.Background(), false, false)
	b := e.bounce(id, "dave@down.test")

	type delivery struct{ rcpt, outcome, reply string }
	var got []delivery
	for _, ev := range rec.Of(event.Delivery) {
		if ev.ID != string(id) || ev.Router != "downstream" || ev.Transport != "fake" || ev.Host != testHost || ev.Sender != "alice@up.test" {
			t.Errorf("Delivery %+v: wrong message, route or host", ev)
		}
		if ev.Delay != e.now().Sub(now) {
			t.Errorf("Delivery Delay %v, want %v since received", ev.Delay, e.now().Sub(now))
		}
		got = append(got, delivery{ev.Recipient, ev.Outcome, ev.Reply})
	}
	want := []delivery{
		{"bob@down.test", event.Delivered, testReply},
		{"dave@down.test", event.Failed, "SMTP error from remote mail server after RCPT TO: 550 5.1.1 no such user"},
		{"erin@down.test", event.Deferred, "Connection refused"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Delivery events\n%q\nwant\n%q", got, want)
	}
	acc := rec.Of(event.Accepted)
	if len(acc) != 1 || acc[0].ID != string(b) || acc[0].Source != "bounce" || !slices.Equal(acc[0].Recipients, []string{"alice@up.test"}) || acc[0].Sender != "" {
		t.Errorf("Accepted events %+v, want the bounce %s to alice@up.test", acc, b)
	}
	bo := rec.Of(event.Bounce)
	if len(bo) != 1 || bo[0].ID != string(b) || bo[0].Parent != string(id) || bo[0].Recipient != "alice@up.test" {
		t.Errorf("Bounce events %+v, want %s about %s to alice@up.test", bo, b, id)
	}
	if c := rec.Of(event.Completed); len(c) != 0 {
		t.Errorf("Completed %+v while erin is deferred", c)
	}

	// The bounce is delivered and completes.
	rec.Reset()
	e.r.RunOnce(context.Background(), false, false)
	d := rec.Of(event.Delivery)
	c := rec.Of(event.Completed)
	if len(d) != 1 || d[0].ID != string(b) || d[0].Outcome != event.Delivered || len(c) != 1 || c[0].ID != string(b) {
		t.Errorf("bounce's run: Delivery %+v, Completed %+v", d, c)
	}
}

// TestEventsBlackhole: a recipient over quota whose route discards is a
// Blackhole delivery, and the message completes.
func TestEventsBlackhole(t *testing.T) {
	rec, bus := eventtest.New()
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"frank@down.test": {Status: deliver.Failed, Reason: deliver.OverQuota, Reply: "552 5.2.2 mailbox full"},
	}}
	r := route.New(route.Options{
		RelayDomains: []string{"down.test", "up.test"},
		Default:      route.StoreRoute{Name: "downstream", Transport: tr, OverQuota: "discard"},
	})
	e := newEnv(t, tr, Options{Hostname: hostname, Router: r, Bus: bus})
	id := e.submit([]string{"frank@down.test"}, nil)
	e.r.RunOnce(context.Background(), false, false)
	d := rec.Of(event.Delivery)
	if len(d) != 1 || d[0].Outcome != event.Blackhole || d[0].Recipient != "frank@down.test" {
		t.Errorf("Delivery events %+v, want frank blackholed", d)
	}
	if c := rec.Of(event.Completed); len(c) != 1 || c[0].ID != string(id) {
		t.Errorf("Completed events %+v, want %s", c, id)
	}
}

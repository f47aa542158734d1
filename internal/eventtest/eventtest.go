// Package eventtest records the events a test's bus carries, so a test
// asserts what metrics and tracking would see.
package eventtest

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"mxgate/event"
)

// Recorder is an event.Sink that keeps a copy of every event. It is safe
// for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []event.Event
	added  chan struct{} // closed and replaced on every event: wakes Wait
}

// New returns an empty recorder and a bus that feeds it.
func New() (*Recorder, *event.Bus) {
	r := &Recorder{added: make(chan struct{})}
	return r, event.NewBus(r)
}

// Event implements event.Sink.
func (r *Recorder) Event(e *event.Event) {
	c := *e
	c.Recipients = slices.Clone(e.Recipients)
	r.mu.Lock()
	r.events = append(r.events, c)
	close(r.added)
	r.added = make(chan struct{})
	r.mu.Unlock()
}

// Events returns every event so far, in order.
func (r *Recorder) Events() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Of returns the events of kind k so far.
func (r *Recorder) Of(k event.Kind) []event.Event {
	var es []event.Event
	for _, e := range r.Events() {
		if e.Kind == k {
			es = append(es, e)
		}
	}
	return es
}

// Kinds returns the kinds of the events so far, in order.
func (r *Recorder) Kinds() []event.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	ks := make([]event.Kind, len(r.events))
	for i, e := range r.events {
		ks[i] = e.Kind
	}
	return ks
}

// Reset forgets the events so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}

// Wait returns the first event of kind k, waiting up to timeout for it
// (events emitted after a reply, such as Disconnect, or by another
// goroutine, such as the queue's).
func (r *Recorder) Wait(k event.Kind, timeout time.Duration) (event.Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if e.Kind == k {
				r.mu.Unlock()
				return e, nil
			}
		}
		added := r.added
		r.mu.Unlock()
		select {
		case <-added:
		case <-deadline.C:
			return event.Event{}, fmt.Errorf("no %s event within %v; have %v", k, timeout, r.Kinds())
		}
	}
}

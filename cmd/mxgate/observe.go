package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"mxgate/config"
	"mxgate/event"
	"mxgate/mainlog"
	"mxgate/tracking"
)

// trackingOpenTimeout bounds opening [tracking] (a PostgreSQL that does
// not answer) for a command; the daemon waits as long as its start-up may.
const (
	trackingOpenTimeout       = 5 * time.Second
	daemonTrackingOpenTimeout = 30 * time.Second
)

// newBus builds the event bus of a process from cfg: the one place its
// watchers (metrics, tracking) are made, each a Sink. serve keeps one bus
// for the daemon's life, across reloads, as its sinks are process-wide;
// the admin commands and sendmail get their own, so what they do is
// tracked too. With no sink the bus is not Enabled and emitters build
// nothing. log takes what a sink has to report. more are the sinks
// only the daemon has (the metrics of its admin listener: metricsSinks);
// daemon says the daemon asks: its tracking store is opened now, and a
// store that cannot be opened stops the start with the reason. A command
// opens the store only when it has something to record (most list), and
// one it cannot open is a warning: the command still does its work.
// The caller closes the bus after its last event, which writes what the
// store has queued. The daemon's store is returned too, for the console's
// searches; a command's is nil.
func newBus(cfg *config.Config, log *mainlog.Logger, daemon bool, more ...event.Sink) (*event.Bus, *tracking.Store, error) {
	sinks := append([]event.Sink{}, more...)
	var store *tracking.Store
	switch {
	case cfg.Tracking.URL == config.TrackingOff:
	case daemon:
		ctx, cancel := context.WithTimeout(context.Background(), daemonTrackingOpenTimeout)
		defer cancel()
		st, err := openTracking(ctx, cfg, log)
		if err != nil {
			return nil, nil, fmt.Errorf("opening [tracking] %s: %w", trackingName(cfg), err)
		}
		store = st
		sinks = append(sinks, st)
	default:
		sinks = append(sinks, &lazyTracking{cfg: cfg, log: log})
	}
	return event.NewBus(sinks...), store, nil
}

// trackingName is the store's URL without a password, for messages.
func trackingName(cfg *config.Config) string {
	if f := cfg.TrackingFile(); f != "" {
		return f
	}
	if u, err := url.Parse(cfg.Tracking.URL); err == nil {
		return u.Redacted()
	}
	return "postgres://..."
}

// lazyTracking is a command's tracking sink: the store is opened at the
// first event, so -bp and the other listings never touch it.
type lazyTracking struct {
	cfg  *config.Config
	log  *mainlog.Logger
	once sync.Once
	st   *tracking.Store
}

func (l *lazyTracking) Event(e *event.Event) {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), trackingOpenTimeout)
		defer cancel()
		st, err := openTracking(ctx, l.cfg, l.log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mxgate: warning: not tracked: opening [tracking] %s: %v\n", trackingName(l.cfg), err)
			return
		}
		l.st = st
	})
	if l.st != nil {
		l.st.Event(e)
	}
}

func (l *lazyTracking) Close() error {
	if l.st == nil {
		return nil
	}
	return l.st.Close()
}

package main

import (
	"mxgate/config"
	"mxgate/event"
	"mxgate/mainlog"
)

// newBus builds the event bus of a process from cfg: the one place its
// watchers (metrics, tracking) are made, each a Sink. serve keeps one bus
// for the daemon's life, across reloads, as its sinks are process-wide;
// the admin commands and sendmail get their own, so what they do is
// tracked too. With no sink the bus is not Enabled and emitters build
// nothing. log takes what a sink has to report. more are the sinks
// only the daemon has (the metrics of its admin listener: metricsSinks).
func newBus(cfg *config.Config, log *mainlog.Logger, more ...event.Sink) (*event.Bus, error) {
	_, _ = cfg, log // the sinks' settings and their log, once there are sinks
	sinks := append([]event.Sink{}, more...)
	return event.NewBus(sinks...), nil
}

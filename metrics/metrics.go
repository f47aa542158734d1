// Package metrics is the Prometheus sink of the event bus: it turns the
// pipeline's events into counters, gauges and histograms on a registry of
// its own, and serves them in the text exposition format.
//
// Label values are bounded sets only (listener, check, stage, action,
// reason code, route and transport names, DNS type): never a sender, a
// recipient, an IP address or a virus name, which would grow the series
// without end; tracking keeps those. The metric names are a contract
// (doc/contracts.md): dashboards and alerts are written against them.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mxgate/event"
)

// QueueFunc reads the queue: how many messages it holds and when the
// oldest of them was received (zero when the queue is empty).
type QueueFunc func() (count int, oldest time.Time, err error)

// Options configure the sink.
type Options struct {
	// Version is the build's version, the value of build_info's label.
	Version string
}

// queueCache is how long a reading of the queue answers scrapes: walking
// a spool of 100,000 messages takes a while, and a scrape every second
// from two Prometheus servers must not do it each time.
const queueCache = 5 * time.Second

const namespace = "mxgate"

// Metrics is the sink and its registry.
type Metrics struct {
	reg *prometheus.Registry

	connections      *prometheus.CounterVec
	connRefused      *prometheus.CounterVec
	connActive       prometheus.Gauge
	messages         *prometheus.CounterVec
	rcptRefused      *prometheus.CounterVec
	decided          *prometheus.CounterVec
	checkDuration    *prometheus.HistogramVec
	checkErrors      *prometheus.CounterVec
	breakerOpen      *prometheus.GaugeVec
	spamScore        prometheus.Histogram
	viruses          prometheus.Counter
	deliveries       *prometheus.CounterVec
	deliveryDuration prometheus.Histogram
	deliveryDelay    prometheus.Histogram
	bounces          prometheus.Counter
	commitBatch      prometheus.Histogram
	syncDuration     prometheus.Histogram
	dnsLookups       *prometheus.CounterVec
	dnsErrors        prometheus.Counter
	adminActions     *prometheus.CounterVec

	// conns are the connections counted in connActive, so that a
	// Disconnect of one never admitted (refused at connect) leaves the
	// gauge alone.
	mu    sync.Mutex
	conns map[string]struct{}
}

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
}

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
}

// Buckets, in the units of each histogram.
var (
	checkBuckets    = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	scoreBuckets    = []float64{-5, -2, 0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30}
	deliveryBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	delayBuckets    = []float64{.1, .5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600}
	batchBuckets    = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
	syncBuckets     = []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// New builds the sink and registers its metrics, the Go runtime's and the
// process's on a registry of its own.
func New(o Options) *Metrics {
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		connections: counter("connections_total", "SMTP connections admitted, by listener.", "listener"),
		connRefused: counter("connections_refused_total", "SMTP connections refused before the greeting, by reason code.", "reason"),
		connActive: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "connections_active",
			Help: "SMTP connections open now."}),
		messages: counter("messages_total", "Messages received, by final action: accepted, tagged, quarantined, discarded; "+
			"rejected and tempfailed count each transaction refused at DATA.", "action"),
		rcptRefused: counter("rcpt_refused_total", "Commands refused before DATA, by stage and reason code: a refused RCPT per recipient.", "stage", "reason"),
		decided:     counter("decided_total", "Refusals, quarantines and discards, by the check that decided them.", "check", "action"),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "check_duration_seconds",
			Help: "Time a check took to answer, by check and stage.", Buckets: checkBuckets}, []string{"check", "stage"}),
		checkErrors: counter("check_errors_total", "Checks and scanners that failed to answer, by check.", "check"),
		breakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "breaker_open",
			Help: "1 while the check's circuit breaker is open (the scanner is skipped), else 0."}, []string{"check"}),
		spamScore:        histogram("spam_score", "Spam scores spamd gave.", scoreBuckets),
		viruses:          prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "viruses_total", Help: "Viruses found by the virus scanner."}),
		deliveries:       counter("deliveries_total", "Delivery attempts of one recipient, by outcome, transport and router.", "outcome", "transport", "router"),
		deliveryDuration: histogram("delivery_duration_seconds", "Time one delivery attempt took.", deliveryBuckets),
		deliveryDelay:    histogram("delivery_delay_seconds", "Time from reception to delivery, of delivered recipients.", delayBuckets),
		bounces:          prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "bounces_total", Help: "Bounces and delay warnings made."}),
		commitBatch:      histogram("spool_commit_batch_size", "Messages made durable by one group commit of the spool.", batchBuckets),
		syncDuration:     histogram("spool_sync_duration_seconds", "Time one group commit's sync took.", syncBuckets),
		dnsLookups:       counter("dns_lookups_total", "DNS queries answered, by type and whether from the cache.", "qtype", "cached"),
		dnsErrors:        prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "dns_lookup_errors_total", Help: "DNS queries that failed."}),
		adminActions:     counter("admin_actions_total", "Administrators' actions on messages, by action.", "action"),
		conns:            map[string]struct{}{},
	}
	// Every final action is there from the start, at 0, so that a rate
	// over the first refusal is not lost to a series that began with it.
	for _, a := range []string{"accepted", "tagged", "quarantined", "discarded", "rejected", "tempfailed"} {
		m.messages.WithLabelValues(a)
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help: "Always 1; the label is the running version."}, []string{"version"})
	build.WithLabelValues(o.Version).Set(1)
	m.reg.MustRegister(m.connections, m.connRefused, m.connActive, m.messages, m.rcptRefused, m.decided,
		m.checkDuration, m.checkErrors, m.breakerOpen, m.spamScore, m.viruses, m.deliveries,
		m.deliveryDuration, m.deliveryDelay, m.bounces, m.commitBatch, m.syncDuration, m.dnsLookups,
		m.dnsErrors, m.adminActions, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchQueue exports the queue gauges, read by read at a scrape at most
// once per queueCache. Call it once: the sink is on the event bus before
// the spool it reads is open.
func (m *Metrics) WatchQueue(read QueueFunc) {
	m.reg.MustRegister(newQueueCollector(read, time.Now))
}

// Handler serves the registry's metrics (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry the metrics are on, for tests that read them.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Event counts e. It only updates counters: it returns at once.
func (m *Metrics) Event(e *event.Event) {
	switch e.Kind {
	case event.Connect:
		m.connections.WithLabelValues(e.Listener).Inc()
		m.open(e.Conn)
	case event.ConnRefused:
		m.connRefused.WithLabelValues(reason(e)).Inc()
	case event.Disconnect:
		m.close(e.Conn)
	case event.Check:
		m.checkDuration.WithLabelValues(e.Check, e.Stage).Observe(e.Duration.Seconds())
		if e.Err != nil {
			m.checkErrors.WithLabelValues(e.Check).Inc()
		}
		if e.Scored {
			m.spamScore.Observe(e.Score)
		}
		if e.Virus != "" {
			m.viruses.Inc()
		}
	case event.Refused:
		action := "rejected"
		if e.Code < 500 {
			action = "tempfailed"
		}
		if e.Stage == "data" {
			m.messages.WithLabelValues(action).Inc()
		} else {
			n := 1
			if e.Stage == "rcpt" && len(e.Recipients) > 1 {
				n = len(e.Recipients)
			}
			m.rcptRefused.WithLabelValues(e.Stage, reason(e)).Add(float64(n))
		}
		if e.Check != "" {
			m.decided.WithLabelValues(e.Check, action).Inc()
		}
	case event.Accepted:
		if !e.Received() {
			return
		}
		action := "accepted"
		if e.Action == "tag" {
			action = "tagged"
		}
		m.messages.WithLabelValues(action).Inc()
	case event.Quarantined, event.Discarded:
		action := "quarantined"
		if e.Kind == event.Discarded {
			action = "discarded"
		}
		m.messages.WithLabelValues(action).Inc()
		if e.Check != "" {
			m.decided.WithLabelValues(e.Check, action).Inc()
		}
	case event.Delivery:
		m.deliveries.WithLabelValues(e.Outcome, e.Transport, e.Router).Inc()
		m.deliveryDuration.Observe(e.Duration.Seconds())
		if e.Outcome == event.Delivered {
			m.deliveryDelay.Observe(e.Delay.Seconds())
		}
	case event.Bounce:
		m.bounces.Inc()
	case event.Admin:
		m.adminActions.WithLabelValues(e.Action).Inc()
	case event.SpoolCommit:
		m.commitBatch.Observe(float64(e.Batch))
		m.syncDuration.Observe(e.Duration.Seconds())
	case event.DNSLookup:
		cached := "false"
		if e.Cached {
			cached = "true"
		}
		m.dnsLookups.WithLabelValues(qtype(e.QType), cached).Inc()
		if e.Err != nil {
			m.dnsErrors.Inc()
		}
	case event.Breaker:
		v := 0.0
		if e.Open {
			v = 1
		}
		m.breakerOpen.WithLabelValues(e.Check).Set(v)
	}
}

// reason is a refusal's label: its reason code, else the check that
// refused, else "other" (a protocol error, a limit).
func reason(e *event.Event) string {
	switch {
	case e.ReasonCode != "":
		return e.ReasonCode
	case e.Check != "":
		return e.Check
	}
	return "other"
}

// qtypes are the DNS types the gateway asks; anything else is "other", so
// the label stays bounded whatever a caller passes.
var qtypes = map[string]bool{"A": true, "AAAA": true, "MX": true, "TXT": true, "PTR": true, "TLSA": true, "CNAME": true, "NS": true, "SOA": true}

func qtype(t string) string {
	if qtypes[t] {
		return t
	}
	return "other"
}

func (m *Metrics) open(conn string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if conn != "" {
		m.conns[conn] = struct{}{}
	}
	m.connActive.Inc()
}

func (m *Metrics) close(conn string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if conn != "" {
		if _, ok := m.conns[conn]; !ok {
			return
		}
		delete(m.conns, conn)
	}
	m.connActive.Dec()
}

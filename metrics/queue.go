package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// queueCollector exports the queue gauges from a reading of the spool
// taken at a scrape and kept for queueCache.
type queueCollector struct {
	read  QueueFunc
	now   func() time.Time
	count *prometheus.Desc
	age   *prometheus.Desc

	mu     sync.Mutex
	at     time.Time // when the reading below was taken; zero: never
	n      int
	oldest time.Time
	err    error
}

func newQueueCollector(read QueueFunc, now func() time.Time) *queueCollector {
	return &queueCollector{
		read:  read,
		now:   now,
		count: prometheus.NewDesc(namespace+"_queue_messages", "Messages in the queue (the spool's -H files).", nil, nil),
		age:   prometheus.NewDesc(namespace+"_queue_oldest_age_seconds", "Age of the oldest message in the queue; 0 when it is empty.", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.count
	ch <- c.age
}

// Collect reports the cached reading, reading the spool again when it is
// older than queueCache. A failed reading is the scrape's error, so
// Prometheus marks the target rather than showing a made-up number.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.at.IsZero() || now.Sub(c.at) >= queueCache {
		c.n, c.oldest, c.err = c.read()
		c.at = now
	}
	if c.err != nil {
		ch <- prometheus.NewInvalidMetric(c.count, c.err)
		return
	}
	age := 0.0
	if !c.oldest.IsZero() {
		age = max(now.Sub(c.oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(c.n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}

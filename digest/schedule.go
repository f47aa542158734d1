package digest

import (
	"context"
	"time"
)

// Next is when a schedule ([digest] schedule and at, at being the time
// of day since midnight) next sends after now, in now's location:
// "hourly" at the next full hour, "daily" at the next at, "weekly" at
// the next at on a Monday; zero for "off". Wall-clock times, so a
// daylight saving change does not move the digest to 06:00 or 08:00.
func Next(schedule string, at time.Duration, now time.Time) time.Time {
	y, m, d := now.Date()
	h, mi := int(at/time.Hour), int(at%time.Hour/time.Minute)
	switch schedule {
	case "hourly":
		return time.Date(y, m, d, now.Hour()+1, 0, 0, 0, now.Location())
	case "daily", "weekly":
		t := time.Date(y, m, d, h, mi, 0, 0, now.Location())
		for !t.After(now) || (schedule == "weekly" && t.Weekday() != time.Monday) {
			d++
			t = time.Date(y, m, d, h, mi, 0, 0, now.Location())
		}
		return t
	}
	return time.Time{}
}

// Run calls send at each time Next gives, until ctx ends; it returns at
// once for "off". A wall clock set back never makes it send twice for
// one time.
func Run(ctx context.Context, schedule string, at time.Duration, send func(context.Context)) {
	var last time.Time
	for {
		now := time.Now()
		from := now
		if from.Before(last) {
			from = last
		}
		next := Next(schedule, at, from)
		if next.IsZero() {
			return
		}
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			last = next
			send(ctx)
		}
	}
}

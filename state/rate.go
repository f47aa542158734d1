package state

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// minInterval is Exim's floor on the time between two events: two in the
// same instant add up (the smoothing then degenerates to rate+Count)
// instead of dividing by zero, and a clock that stepped back counts as
// the same instant.
const minInterval = 1e-9

// rateTTLPeriods is how many Periods a rate record outlives its last
// stored event: by then its weight, exp(-5), is under 1%.
const rateTTLPeriods = 5

// NextRate is Exim's ratelimit arithmetic, the reference both backends
// implement: the rate an event of r sees after the rate prev stored at
// prevTime (zero: never seen), and whether the record is to be stored
// (always when strict, only under the limit when leaky).
func NextRate(prev float64, prevTime time.Time, r RateOptions) (rate float64, store bool) {
	if prevTime.IsZero() {
		rate = r.Count
	} else {
		interval := r.Now.Sub(prevTime).Seconds()
		if interval < minInterval {
			interval = minInterval
		}
		iOverP := interval / r.Period.Seconds()
		a := math.Exp(-iOverP)
		rate = (1-a)*r.Count/iOverP + a*prev
		if rate < r.Count {
			rate = r.Count
		}
	}
	return rate, r.Strict || rate < r.Limit
}

// rateTTL is the lifetime of a rate record stored for period.
func rateTTL(period time.Duration) time.Duration { return rateTTLPeriods * period }

// A rate record is stored as text, "RATE MICROSECONDS", the same in both
// backends (the Redis script writes and reads it), so that a record is
// readable with redis-cli GET.
func encodeRate(rate float64, t time.Time) []byte {
	return []byte(strconv.FormatFloat(rate, 'g', 17, 64) + " " + strconv.FormatInt(t.UnixMicro(), 10))
}

func decodeRate(b []byte) (float64, time.Time, error) {
	rs, ts, ok := strings.Cut(string(b), " ")
	if !ok {
		return 0, time.Time{}, fmt.Errorf("rate record %q: not \"RATE TIME\"", b)
	}
	rate, err := strconv.ParseFloat(rs, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("rate record %q: %w", b, err)
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("rate record %q: %w", b, err)
	}
	return rate, time.UnixMicro(us), nil
}

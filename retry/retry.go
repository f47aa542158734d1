// Package retry owns Exim's retry rules ("F,2h,15m; G,16h,1h,1.5; F,4d,6h"):
// parsing them and telling when a deferred message is tried next and when
// it is given up.
package retry

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// MaxInterval caps every interval a Schedule gives, as Exim's
// retry_interval_max (default 24h) does: a geometric rule would otherwise
// push the next try beyond any useful horizon (and overflow time.Duration).
const MaxInterval = 24 * time.Hour

// Default is Exim's default retry rule: every 15 minutes for 2 hours,
// then growing by 1.5 from 1 hour up to 16 hours, then every 6 hours until
// 4 days after the first failure.
const Default = "F,2h,15m; G,16h,1h,1.5; F,4d,6h"

// rule is one parameter set of an Exim retry rule. Its cutoff is measured
// from the first failure; it applies while that time has not passed it.
type rule struct {
	kind     byte // 'F' fixed, 'G' geometric, 'H' randomised geometric
	cutoff   time.Duration
	interval time.Duration // F: the interval; G and H: the first interval
	factor   float64       // G and H: the multiplier
}

// Schedule is a parsed Exim retry rule: when to try a deferred message
// again, and when to give up on it.
type Schedule struct {
	rules []rule
	// jitter returns a value in [0, 1) for H rules; nil is
	// rand.Float64 (so two parses of one rule are reflect.DeepEqual, as
	// config's tests want); tests pin it.
	jitter func() float64
}

// ParseSchedule parses an Exim retry rule's parameter sets, e.g.
// "F,2h,15m; G,16h,1h,1.5; F,4d,6h". Durations are Go durations plus d
// (days) and w (weeks). Cutoffs must grow from one item to the next, or the
// later item could never apply.
func Parse(rule string) (*Schedule, error) {
	if strings.TrimSpace(rule) == "" {
		return nil, errors.New("retry rule is empty: need at least one of F,cutoff,interval / G,cutoff,start,multiplier / H,cutoff,start,multiplier")
	}
	s := &Schedule{}
	for i, item := range strings.Split(rule, ";") {
		item = strings.TrimSpace(item)
		r, err := parseRule(item)
		if err == nil && len(s.rules) > 0 && r.cutoff <= s.rules[len(s.rules)-1].cutoff {
			err = errors.New("cutoff is not after the previous item's, so this item would never apply")
		}
		if err != nil {
			return nil, fmt.Errorf("retry rule item %d %q: %w", i+1, item, err)
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

func parseRule(item string) (rule, error) {
	f := strings.Split(item, ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	var r rule
	switch f[0] {
	case "F":
		if len(f) != 3 {
			return r, errors.New("fixed needs cutoff and interval")
		}
	case "G", "H":
		if len(f) != 4 {
			name := map[string]string{"G": "geometric", "H": "randomised geometric"}[f[0]]
			return r, fmt.Errorf("%s needs cutoff, start and multiplier", name)
		}
	case "":
		return r, errors.New("empty item: need F, G or H and its parameters")
	default:
		return r, fmt.Errorf("unknown kind %q: want F (fixed), G (geometric) or H (randomised geometric)", f[0])
	}
	r.kind = f[0][0]
	var err error
	if r.cutoff, err = parseDuration(f[1]); err != nil {
		return r, fmt.Errorf("cutoff: %w", err)
	}
	if r.cutoff <= 0 {
		return r, fmt.Errorf("cutoff %q must be positive", f[1])
	}
	if r.interval, err = parseDuration(f[2]); err != nil {
		return r, fmt.Errorf("interval: %w", err)
	}
	if r.interval <= 0 {
		return r, fmt.Errorf("interval %q must be positive", f[2])
	}
	if r.kind == 'F' {
		return r, nil
	}
	r.factor, err = strconv.ParseFloat(f[3], 64)
	if err != nil || math.IsNaN(r.factor) || math.IsInf(r.factor, 0) {
		return r, fmt.Errorf("multiplier %q is not a number", f[3])
	}
	if r.factor < 1 {
		return r, fmt.Errorf("multiplier %q must be at least 1", f[3])
	}
	return r, nil
}

// parseDuration accepts Go durations plus the d (24h) and w (7d) units,
// also mixed: "1w2d", "1d12h", "1.5d".
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		// One component: a number and its unit.
		i := 0
		for i < len(rest) && (rest[i] == '.' || rest[i] >= '0' && rest[i] <= '9') {
			i++
		}
		j := i
		for j < len(rest) && !(rest[j] == '.' || rest[j] >= '0' && rest[j] <= '9') {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		var d time.Duration
		switch unit {
		case "d", "w":
			n, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			per := 24 * time.Hour
			if unit == "w" {
				per *= 7
			}
			f := n * float64(per)
			if f >= math.MaxInt64 {
				return 0, fmt.Errorf("duration %q is too long", s)
			}
			d = time.Duration(f)
		default:
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, fmt.Errorf("invalid duration %q: want Go syntax plus d and w (30m, 4d, 1w)", s)
			}
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += d
	}
	return total, nil
}

// Next says when to try a message again after a failed try at lastTry.
// The rule that applies is the first whose cutoff has not passed at lastTry
// (measured from firstFailed); once lastTry is past the last cutoff,
// giveUp is true and next is meaningless. attempts counts the tries made
// so far, the one at lastTry included.
//
// A geometric rule's interval grows by its multiplier with every try made
// under it. Which step a try is at follows from the time since the rule
// began (the steps a try made on time would have reached), so retries that
// ran late or were forced keep to the rule's pace; but the step never
// exceeds attempts-1, the number of earlier failed tries, so a message
// that was not tried for a while (the gateway was down) is not put off for
// an interval it has not earned.
func (s *Schedule) Next(firstFailed, lastTry time.Time, attempts int) (next time.Time, giveUp bool) {
	elapsed := max(lastTry.Sub(firstFailed), 0)
	start := time.Duration(0) // when the applying rule began, from firstFailed
	for _, r := range s.rules {
		if elapsed > r.cutoff {
			start = r.cutoff
			continue
		}
		interval := r.interval
		if r.kind != 'F' {
			interval = geometric(r, elapsed-start, attempts-1)
			if r.kind == 'H' {
				// Randomised: somewhere in [interval/2, interval].
				jitter := rand.Float64
				if s.jitter != nil {
					jitter = s.jitter
				}
				interval -= time.Duration(float64(interval/2) * jitter())
			}
		}
		return lastTry.Add(min(interval, MaxInterval)), false
	}
	return time.Time{}, true
}

// geometric is the interval of rule r at the step reached after since
// under it, and after at most maxSteps steps: with start a and factor m,
// step k begins at a(m^k-1)/(m-1) and lasts a*m^k.
func geometric(r rule, since time.Duration, maxSteps int) time.Duration {
	a, m := float64(r.interval), r.factor
	var k float64
	if m == 1 {
		k = float64(since) / a
	} else {
		k = math.Log1p(float64(since)*(m-1)/a) / math.Log(m)
	}
	// A try right at a step's start belongs to that step, even when
	// rounding puts it a hair before.
	k = math.Floor(k + 1e-9)
	k = max(min(k, float64(maxSteps)), 0)
	iv := a * math.Pow(m, k)
	if iv >= float64(MaxInterval) {
		return MaxInterval
	}
	return time.Duration(iv)
}

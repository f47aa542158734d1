package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that also reads Exim-style "4d" and "1w".
type Duration time.Duration

// Days and weeks are spelled out here because time.ParseDuration stops at
// hours, while retry rules and admins' habits (Exim) count in days.
const (
	day  = 24 * time.Hour
	week = 7 * day
)

// UnmarshalText reads Go duration syntax ("90s", "1h30m", "1.5h") extended
// with the units "d" (24h) and "w" (7d), which may be mixed ("1w2d12h").
// A plain "0" is zero, as in Go.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText is String, which UnmarshalText reads back to the same value.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// durationUnits are the units String writes, biggest first. Weeks are
// left out: "14d" reads more easily than "2w".
var durationUnits = []struct {
	name string
	d    time.Duration
}{
	{"d", day}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second},
	{"ms", time.Millisecond}, {"us", time.Microsecond}, {"ns", time.Nanosecond},
}

// String writes the duration as a person would, each unit once and only
// those that count: "5m", "30s", "4d", "1h30m", "1d12h"; "0s" for zero.
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	// Counted in uint64 so that the most negative duration has a magnitude.
	rest := uint64(d)
	if d < 0 {
		b.WriteByte('-')
		rest = -rest
	}
	for _, u := range durationUnits {
		if n := rest / uint64(u.d); n > 0 {
			b.WriteString(strconv.FormatUint(n, 10))
			b.WriteString(u.name)
			rest -= n * uint64(u.d)
		}
	}
	return b.String()
}

func parseDuration(s string) (time.Duration, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid duration %q: %s (want e.g. \"30s\", \"5m\", \"1h30m\", \"4d\", \"1w\")", s, why)
	}
	if s == "0" || s == "+0" || s == "-0" {
		return 0, nil
	}
	rest := s
	neg := false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if rest == "" {
		return 0, bad("empty")
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && isNumberByte(rest[i]) {
			i++
		}
		if i == 0 {
			return 0, bad("expected a number")
		}
		j := i
		for j < len(rest) && !isNumberByte(rest[j]) {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		// Days and weeks are parsed as hours so that fractions ("1.5d")
		// keep Go's exact integer arithmetic.
		mult := time.Duration(1)
		goUnit := unit
		switch unit {
		case "":
			return 0, bad("missing unit after " + num)
		case "d":
			goUnit, mult = "h", day/time.Hour
		case "w":
			goUnit, mult = "h", week/time.Hour
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h":
		default:
			return 0, bad(fmt.Sprintf("unknown unit %q", unit))
		}
		v, err := time.ParseDuration(num + goUnit)
		if err != nil {
			// The unit is known, so the number is malformed or too large.
			return 0, bad(fmt.Sprintf("cannot read %q", num+unit))
		}
		if v > math.MaxInt64/mult {
			return 0, bad("too large")
		}
		v *= mult
		if total > math.MaxInt64-v {
			return 0, bad("too large")
		}
		total += v
	}
	if neg {
		total = -total
	}
	return total, nil
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.'
}

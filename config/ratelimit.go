package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RateLimit is one [[ratelimit]]: Exim's ratelimit ACL condition, a
// smoothed rate of messages (recipients, connections) per period for one
// key, and what to do with the client that goes over it. Every table is
// checked; authenticated and trusted clients are limited too, since a
// stolen password or a compromised script on a trusted host is what a
// rate limit is for.
type RateLimit struct {
	Name string `toml:"name"` // in log lines and hold keys; default "KEY/per_PER", unique, no colon
	// Key is what is counted: "client_ip", "auth_user", "sender" or
	// "sender_domain". A client without one (no AUTH, the null sender)
	// is not counted by that limit.
	Key  string `toml:"key"`
	Rate string `toml:"rate"` // "COUNT/PERIOD" such as "100/1h"; required
	Per  string `toml:"per"`  // "mail" (default), "rcpt" or "conn"
	// Mode is Exim's "leaky" (default: a client over the limit gets back
	// under it at the limit's pace) or "strict" (every attempt counts).
	Mode string `toml:"mode"`
	// Action: "defer" (default, 451 4.7.0), "reject" (550 5.7.1) or
	// "hold" (accepted, frozen in the queue until `mxgate hold release`).
	Action string `toml:"action"`
	// OnError is what a state store that cannot be asked makes of the
	// check: "accept" (default) or "tempfail".
	OnError  string         `toml:"on_error"`
	Override []RateOverride `toml:"override"`
	// Count and Period are Rate parsed. Not printed.
	Count  float64       `toml:"-"`
	Period time.Duration `toml:"-"`
}

// RateOverride is a [[ratelimit.override]]: another rate for one key
// value (an address, a domain, an IP), matched case-insensitively.
type RateOverride struct {
	Match  string        `toml:"match"`
	Rate   string        `toml:"rate"`
	Count  float64       `toml:"-"`
	Period time.Duration `toml:"-"`
}

// Greylist is [greylist]: postgrey's triplet greylisting at RCPT.
type Greylist struct {
	Enabled bool     `toml:"enabled"` // default false
	Delay   Duration `toml:"delay"`   // a retry before this is deferred again; default 5m
	// RetryWindow is how long after the first attempt a retry still
	// passes; later, the triplet starts over. Default 2d.
	RetryWindow Duration `toml:"retry_window"`
	Expire      Duration `toml:"expire"` // how long a passed triplet is remembered after its last use; default 35d
	// AutoAllow is how many triplets a client network (/24, /64) must
	// pass before it skips greylisting; default 5.
	AutoAllow int `toml:"auto_allow"`
	// OnError is what a state store that cannot be asked makes of the
	// check: "accept" (default) or "tempfail".
	OnError string `toml:"on_error"`
}

// rateLimitKeys are the values ratelimit.key accepts.
var rateLimitKeys = []string{"client_ip", "auth_user", "sender", "sender_domain"}

// checkRateLimits fills the defaults of every [[ratelimit]] and checks it.
func (d *decoder) checkRateLimits(c *Config) {
	names := map[string]int{}
	for i := range c.RateLimits {
		r := &c.RateLimits[i]
		key := keyPath{"ratelimit"}.index(i)
		if r.Key == "" {
			d.fail(d.pos.line(key), fmt.Errorf("missing required key %q", key.child("key").String()))
		} else {
			d.enum(key.child("key"), &r.Key, rateLimitKeys...)
		}
		if r.Rate == "" {
			d.fail(d.pos.line(key), fmt.Errorf("missing required key %q", key.child("rate").String()))
		} else if n, p, err := ParseRate(r.Rate); err != nil {
			d.failKey(key.child("rate"), -1, "%w", err)
		} else {
			r.Count, r.Period = n, p
		}
		d.enum(key.child("per"), &r.Per, "mail", "rcpt", "conn")
		d.enum(key.child("mode"), &r.Mode, "leaky", "strict")
		d.enum(key.child("action"), &r.Action, "defer", "reject", "hold")
		d.enum(key.child("on_error"), &r.OnError, "accept", "tempfail")
		nameKey := key.child("name")
		switch {
		case !d.pos.has(nameKey):
			r.Name = r.Key + "/per_" + r.Per
		case r.Name == "" || strings.ContainsFunc(r.Name, func(c rune) bool { return c <= ' ' || c == 0x7f || c == ':' }):
			// The hold key is NAME:VALUE, and a VALUE (an IPv6 address)
			// may hold colons: the name must not.
			d.failKey(nameKey, -1, "invalid name %q: it must be non-empty, without spaces, colons or control characters", r.Name)
		}
		if first, dup := names[r.Name]; dup {
			d.failKey(nameKey, -1, "rate limit %q is already configured as ratelimit[%d]; give each a name", r.Name, first)
		} else {
			names[r.Name] = i
		}
		for j := range r.Override {
			o := &r.Override[j]
			okey := key.child("override").index(j)
			if o.Match == "" {
				d.fail(d.pos.line(okey), fmt.Errorf("missing required key %q", okey.child("match").String()))
			}
			if n, p, err := ParseRate(o.Rate); err != nil {
				d.failKey(okey.child("rate"), -1, "%w", err)
			} else {
				o.Count, o.Period = n, p
			}
		}
	}
}

// ParseRate reads "COUNT/PERIOD" ("100/1h"); COUNT may be 0 (every
// event is over the limit), PERIOD is a duration above 0.
func ParseRate(s string) (float64, time.Duration, error) {
	num, per, ok := strings.Cut(s, "/")
	n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 32)
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("invalid rate %q (want COUNT/PERIOD such as \"100/1h\")", s)
	}
	p, err := parseDuration(strings.TrimSpace(per))
	if err != nil || p <= 0 {
		return 0, 0, fmt.Errorf("invalid period in rate %q (want COUNT/PERIOD such as \"100/1h\", a period above 0)", s)
	}
	return float64(n), p, nil
}

// checkGreylist fills the defaults of [greylist] and checks it, also
// while it is off.
func (d *decoder) checkGreylist(c *Config) {
	g := &c.Greylist
	d.duration(keyPath{"greylist", "delay"}, &g.Delay, 5*time.Minute)
	d.duration(keyPath{"greylist", "retry_window"}, &g.RetryWindow, 48*time.Hour)
	d.duration(keyPath{"greylist", "expire"}, &g.Expire, 35*24*time.Hour)
	d.count(keyPath{"greylist", "auto_allow"}, &g.AutoAllow, 5)
	d.enum(keyPath{"greylist", "on_error"}, &g.OnError, "accept", "tempfail")
	if g.Delay >= g.RetryWindow {
		d.failKey(keyPath{"greylist", "retry_window"}, -1, "%q is not above greylist.delay %q: no retry could pass", g.RetryWindow, g.Delay)
	}
}

package config

import (
	"slices"
	"strings"
	"time"
)

// Callout is sender verification by callout ([callout], Exim's
// verify = sender/callout): the sender domain's own MX is asked whether
// the sender exists before a recipient is accepted. The cache lives in
// data_dir/db/callout.db.
type Callout struct {
	Enabled bool `toml:"enabled"` // default false: no sender is probed
	Port    int  `toml:"port"`    // SMTP port probed on the MX hosts; default 25
	// Resolver is the recursive resolvers asked for MX and address
	// records, "IP:PORT" (a bare IP means port 53); default: the
	// nameservers of /etc/resolv.conf.
	Resolver StringList `toml:"resolver"`
	// Options are Exim's callout options: "random" (a domain that accepts
	// a random local part accepts everything, and its answers stop
	// counting), "postmaster" (the domain must accept postmaster@),
	// "defer_ok" (a probe without an answer accepts the sender),
	// "use_postmaster" (MAIL FROM:<postmaster@hostname> instead of <>).
	Options       []string `toml:"options"`
	Timeout       Duration `toml:"timeout"`        // per SMTP command and connect; default 10s
	Deadline      Duration `toml:"deadline"`       // per probe, all MX hosts together; default 30s
	ExemptDomains []string `toml:"exempt_domains"` // senders in these domains (and their subdomains) are never probed
	PositiveTTL   Duration `toml:"positive_ttl"`   // how long "sender exists" is cached; default 24h
	NegativeTTL   Duration `toml:"negative_ttl"`   // how long "sender refused" is cached; default 2h
	CacheSize     int      `toml:"cache_size"`     // cache entries kept; default 100000
	// Politeness towards one MX host address, so a spam run forging one
	// domain's senders never turns the gateway into a callout flood.
	PerHostConcurrency int `toml:"per_host_concurrency"` // probes at once; default 4
	PerHostRate        int `toml:"per_host_rate"`        // probes per second after a burst of 20; default 5
}

// calloutOptions are the values callout.options accepts.
var calloutOptions = []string{"random", "postmaster", "defer_ok", "use_postmaster"}

// Has reports whether option opt (one of calloutOptions) is set.
func (c *Callout) Has(opt string) bool { return slices.Contains(c.Options, opt) }

// checkCallout fills the defaults of [callout] and checks its values.
// They are checked even while enabled = false, so switching it on never
// reveals a broken section.
func (d *decoder) checkCallout(c *Config) {
	o := &c.Callout
	portKey := keyPath{"callout", "port"}
	switch {
	case !d.pos.has(portKey):
		o.Port = 25
	case o.Port < 1 || o.Port > 65535:
		d.failKey(portKey, -1, "invalid port %d (want 1-65535)", o.Port)
	}
	d.resolvers(keyPath{"callout", "resolver"}, &o.Resolver, o.Enabled)
	optKey := keyPath{"callout", "options"}
	for i, opt := range o.Options {
		switch {
		case !slices.Contains(calloutOptions, opt):
			d.failKey(optKey, i, "unknown option %q (want %q, %q, %q or %q)", opt,
				calloutOptions[0], calloutOptions[1], calloutOptions[2], calloutOptions[3])
		case slices.Index(o.Options, opt) < i:
			d.failKey(optKey, i, "option %q is listed twice", opt)
		}
	}
	d.count(keyPath{"callout", "per_host_concurrency"}, &o.PerHostConcurrency, 4)
	d.count(keyPath{"callout", "per_host_rate"}, &o.PerHostRate, 5)
	d.duration(keyPath{"callout", "timeout"}, &o.Timeout, 10*time.Second)
	d.duration(keyPath{"callout", "deadline"}, &o.Deadline, 30*time.Second)
	if o.Timeout > o.Deadline {
		d.failKey(keyPath{"callout", "timeout"}, -1, "%q is above callout.deadline %q: a probe could never wait that long", o.Timeout, o.Deadline)
	}
	domKey := keyPath{"callout", "exempt_domains"}
	for i, dom := range o.ExemptDomains {
		low := strings.ToLower(dom)
		switch {
		case strings.HasSuffix(low, ".") && validDomain(strings.TrimSuffix(low, ".")):
			d.failKey(domKey, i, "invalid domain name %q: remove the trailing dot", dom)
		case !validDomain(low):
			d.failKey(domKey, i, "invalid domain name %q", dom)
		}
		o.ExemptDomains[i] = low
	}
	d.duration(keyPath{"callout", "positive_ttl"}, &o.PositiveTTL, 24*time.Hour)
	d.duration(keyPath{"callout", "negative_ttl"}, &o.NegativeTTL, 2*time.Hour)
	d.count(keyPath{"callout", "cache_size"}, &o.CacheSize, 100000)
}

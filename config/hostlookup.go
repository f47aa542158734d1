package config

import "time"

// HostLookup is the client's reverse DNS ([host_lookup], Exim's
// host_lookup = *): at connect the PTR names of the client's address,
// each forward-confirmed, give the name the Received header, H= and the
// milters show.
type HostLookup struct {
	Enabled bool `toml:"enabled"` // default true; false: no PTR lookups, no names
	// Resolver is the recursive resolvers asked, "IP:PORT" (a bare IP
	// means port 53); default: the nameservers of /etc/resolv.conf. With
	// none known only the hosts file (/etc/hosts) names clients.
	Resolver  StringList `toml:"resolver"`
	Timeout   Duration   `toml:"timeout"`    // the PTR and the forward lookups together; default 5s
	CacheSize int        `toml:"cache_size"` // addresses kept; default 10000
	MinTTL    Duration   `toml:"min_ttl"`    // floor of answer TTLs; default 30s
	MaxTTL    Duration   `toml:"max_ttl"`    // ceiling of answer TTLs; default 1h
}

// checkHostLookup fills the defaults of [host_lookup] and checks its
// values, also while enabled = false, so switching it on never reveals a
// broken section.
func (d *decoder) checkHostLookup(c *Config) {
	h := &c.HostLookup
	if !d.pos.has(keyPath{"host_lookup", "enabled"}) {
		h.Enabled = true
	}
	// Not "in use": a machine without resolv.conf still starts, the
	// embedded default included, and names its clients from /etc/hosts.
	d.resolvers(keyPath{"host_lookup", "resolver"}, &h.Resolver, false)
	d.duration(keyPath{"host_lookup", "timeout"}, &h.Timeout, 5*time.Second)
	d.count(keyPath{"host_lookup", "cache_size"}, &h.CacheSize, 10000)
	d.duration(keyPath{"host_lookup", "min_ttl"}, &h.MinTTL, 30*time.Second)
	d.duration(keyPath{"host_lookup", "max_ttl"}, &h.MaxTTL, time.Hour)
	if h.MinTTL > h.MaxTTL {
		d.failKey(keyPath{"host_lookup", "min_ttl"}, -1, "%q is above host_lookup.max_ttl %q", h.MinTTL, h.MaxTTL)
	}
}

package config

import (
	"time"

	"mxgate/state"
)

// State is where what several gateways share lives ([state]): rate-limit
// counters, greylist triplets, the callout, recipient-verification and
// DNS-list caches. Embedded by default (memory, written behind to
// data_dir/db/state.db: one gateway); a Redis URL lets every gateway
// behind one MX share it.
type State struct {
	// URL is "" (embedded) or "redis://[user:pass@]host:port/db",
	// "rediss://..." (TLS) or "unix:///path.sock?db=N"; Valkey too.
	URL      string   `toml:"url"`
	Timeout  Duration `toml:"timeout"`   // per call to Redis; default 500ms
	PoolSize int      `toml:"pool_size"` // connections to Redis at most; default 10
}

// checkState fills the defaults of [state] and checks its URL, which
// state.Open then trusts.
func (d *decoder) checkState(c *Config) {
	o := &c.State
	d.duration(keyPath{"state", "timeout"}, &o.Timeout, 500*time.Millisecond)
	d.count(keyPath{"state", "pool_size"}, &o.PoolSize, 10)
	if o.URL == "" {
		return
	}
	key := keyPath{"state", "url"}
	if !state.IsRedis(o.URL) {
		d.failKey(key, -1, "invalid url %q: want \"\" (embedded), redis://, rediss:// or unix://", o.URL)
		return
	}
	if err := state.ParseURL(o.URL); err != nil {
		d.failKey(key, -1, "invalid url %q: %v", o.URL, err)
	}
}

// StateOptions are the options of state.Open for this config.
func (c *Config) StateOptions() state.Options {
	return state.Options{URL: c.State.URL, File: state.File(c.DataDir), Timeout: time.Duration(c.State.Timeout), PoolSize: c.State.PoolSize}
}

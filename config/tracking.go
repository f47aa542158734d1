package config

import (
	"path/filepath"
	"strings"
	"time"
)

// Tracking is the message tracking database ([tracking]): every
// attempt, refused or accepted, and what became of it, for `mxgate track`,
// `mxgate stats` and the console.
type Tracking struct {
	// URL is "sqlite:PATH" (default sqlite:DATA_DIR/tracking.db; a
	// relative PATH is relative to the config file's directory),
	// "postgres://user:pass@host/db" (or postgresql://) for several
	// gateways into one database, or "none": no tracking.
	URL       string   `toml:"url"`
	Retention Duration `toml:"retention"` // rows older are deleted; default 30d
	Queue     int      `toml:"queue"`     // events buffered; past it they are dropped and counted; default 10000
}

// TrackingOff is the url that turns tracking off.
const TrackingOff = "none"

// checkTracking fills the defaults of [tracking] and checks its URL,
// which tracking.Open then trusts.
func (d *decoder) checkTracking(c *Config) {
	o := &c.Tracking
	d.duration(keyPath{"tracking", "retention"}, &o.Retention, 30*24*time.Hour)
	d.count(keyPath{"tracking", "queue"}, &o.Queue, 10000)
	if o.URL == "" {
		o.URL = "sqlite:" + filepath.Join(c.DataDir, "tracking.db")
		return
	}
	key := keyPath{"tracking", "url"}
	scheme, rest, _ := strings.Cut(o.URL, ":")
	switch scheme {
	case TrackingOff:
		if rest != "" {
			d.failKey(key, -1, "invalid url %q: want sqlite:PATH, postgres://... or \"none\"", o.URL)
		}
	case "sqlite":
		if rest == "" {
			d.failKey(key, -1, "invalid url %q: sqlite: needs a file path", o.URL)
		} else if !filepath.IsAbs(rest) && d.base != "" {
			o.URL = "sqlite:" + filepath.Join(d.base, rest)
		}
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") {
			d.failKey(key, -1, "invalid url %q: want postgres://user:pass@host/db", o.URL)
		}
	default:
		d.failKey(key, -1, "invalid url %q: want sqlite:PATH, postgres://... or \"none\"", o.URL)
	}
}

// TrackingFile is the SQLite file of [tracking], "" when tracking is off
// or in PostgreSQL.
func (c *Config) TrackingFile() string {
	p, ok := strings.CutPrefix(c.Tracking.URL, "sqlite:")
	if !ok {
		return ""
	}
	return p
}

package config

import (
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Digest is the end users' quarantine report ([digest]): a mail to each
// local recipient of quarantined messages, each listed with signed links
// to release or delete it for that recipient, served by the admin
// listener at URL/q/.
type Digest struct {
	// URL is the admin listener as users reach it,
	// "https://mx.example.com:8025"; "" sends no digests.
	URL string `toml:"url"`
	// Schedule is "daily" (default), "hourly", "weekly" (Mondays) or
	// "off" (only `mxgate digest send`).
	Schedule string `toml:"schedule"`
	// At is the local time of day, "HH:MM", of a daily or weekly digest;
	// default "07:00".
	At string `toml:"at"`
	// AtTime is At as the time since midnight. Not printed.
	AtTime time.Duration `toml:"-"`
	// LinkLifetime is how long a digest's links work; default 7d.
	LinkLifetime Duration `toml:"link_lifetime"`
	// KeyFile holds the links' HMAC key, 32 random bytes made (mode
	// 0600) at the daemon's first start; default DATA_DIR/digest.key.
	KeyFile string `toml:"key_file"`
	// From is the digest's From: and the address it names; default
	// postmaster@HOSTNAME.
	From string `toml:"from"`
}

// checkDigest fills the defaults of [digest] and checks its values, also
// while url is "", so setting it never reveals a broken section.
func (d *decoder) checkDigest(c *Config) {
	g := &c.Digest
	d.enum(keyPath{"digest", "schedule"}, &g.Schedule, "daily", "hourly", "weekly", "off")
	if g.At == "" {
		g.At = "07:00"
	}
	if t, err := time.Parse("15:04", g.At); err != nil || len(g.At) != 5 {
		d.failKey(keyPath{"digest", "at"}, -1, "invalid time of day %q (want HH:MM, e.g. \"07:00\")", g.At)
	} else {
		g.AtTime = time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute
	}
	d.duration(keyPath{"digest", "link_lifetime"}, &g.LinkLifetime, 7*24*time.Hour)
	if g.KeyFile == "" {
		g.KeyFile = filepath.Join(c.DataDir, "digest.key")
	} else if d.base != "" && !filepath.IsAbs(g.KeyFile) {
		g.KeyFile = filepath.Join(d.base, g.KeyFile)
	}
	if g.From == "" {
		g.From = "postmaster@" + c.Hostname
	} else if local, domain, ok := strings.Cut(g.From, "@"); !ok || local == "" || !validDomain(domain) || strings.ContainsAny(g.From, " \t<>\"\r\n") {
		d.failKey(keyPath{"digest", "from"}, -1, "invalid address %q (want local@domain, without <>)", g.From)
	}
	if g.URL != "" {
		d.checkDigestURL(g)
		if c.Admin.Listen == "" {
			d.failKey(keyPath{"digest", "url"}, -1, "is set but admin.listen is not: the digest's links are served by the admin listener")
		}
	}
}

// checkDigestURL refuses a url the links could not be made of, and warns
// of plain http to anything but loopback: each link is a credential.
func (d *decoder) checkDigestURL(g *Digest) {
	key := keyPath{"digest", "url"}
	u, err := url.Parse(g.URL)
	switch {
	case err != nil:
		d.failKey(key, -1, "invalid url %q: %v", g.URL, err)
		return
	case u.Scheme != "http" && u.Scheme != "https":
		d.failKey(key, -1, "invalid url %q: want http:// or https://", g.URL)
		return
	case u.Hostname() == "":
		d.failKey(key, -1, "invalid url %q: no host", g.URL)
		return
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		d.failKey(key, -1, "invalid url %q: want scheme://host[:port][/path], without user, query or fragment", g.URL)
		return
	}
	g.URL = strings.TrimRight(g.URL, "/")
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		d.warn(key, -1, "url %q is not https: the digest's links carry credentials in the clear", g.URL)
	}
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// DigestEnabled reports whether digests are sent: [digest] url is set.
func (c *Config) DigestEnabled() bool { return c.Digest.URL != "" }

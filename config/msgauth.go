package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// MsgAuth is sender authentication ([msgauth]): SPF, DKIM and DMARC are
// checked on every message at the end of DATA and recorded in one
// Authentication-Results header under the gateway's hostname.
type MsgAuth struct {
	Enabled bool `toml:"enabled"` // default false: nothing checked or stamped
	// Resolver is the recursive resolvers asked for SPF, DKIM key and
	// DMARC records, "IP:PORT" (a bare IP means port 53); default: the
	// nameservers of /etc/resolv.conf.
	Resolver StringList `toml:"resolver"`
	// SPFFail is what SPF fail does: "stamp" (default: only recorded,
	// as forwarded mail fails SPF through no fault of its own) or
	// "reject" (550 5.7.23).
	SPFFail string `toml:"spf_fail"`
	// DMARCReject is what a failing message from a domain publishing
	// p=reject gets: "honour" (default, 550 5.7.1, what the domain
	// asks of receivers) or "stamp" (only recorded).
	DMARCReject string   `toml:"dmarc_reject"`
	Timeout     Duration `toml:"timeout"` // all checks of one message together; default 10s
	// DKIMSign signs mail relayed for relay.trusted_networks with the key
	// of its From: domain (or of the nearest parent domain listed).
	DKIMSign []DKIMSign `toml:"dkim_sign"`
}

// DKIMSign is one signing domain ([[msgauth.dkim_sign]]).
type DKIMSign struct {
	Domain   string `toml:"domain"`   // d=; lower-cased
	Selector string `toml:"selector"` // s=; the key is published at SELECTOR._domainkey.DOMAIN
	KeyFile  string `toml:"key_file"` // PEM private key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8)
}

// checkMsgAuth fills the defaults of [msgauth] and checks its values, also
// while enabled = false, so switching it on never reveals a broken section.
func (d *decoder) checkMsgAuth(c *Config) {
	o := &c.MsgAuth
	d.resolvers(keyPath{"msgauth", "resolver"}, &o.Resolver, o.Enabled)
	d.enum(keyPath{"msgauth", "spf_fail"}, &o.SPFFail, "stamp", "reject")
	d.enum(keyPath{"msgauth", "dmarc_reject"}, &o.DMARCReject, "honour", "stamp")
	d.duration(keyPath{"msgauth", "timeout"}, &o.Timeout, 10*time.Second)
	domains := map[string]int{}
	for i := range o.DKIMSign {
		s := &o.DKIMSign[i]
		key := keyPath{"msgauth", "dkim_sign"}.index(i)
		domKey := key.child("domain")
		low := strings.ToLower(s.Domain)
		switch {
		case s.Domain == "":
			d.fail(d.pos.line(key), fmt.Errorf("missing required key %q", domKey.String()))
		case !validDomain(low):
			d.failKey(domKey, -1, "invalid domain name %q", s.Domain)
		default:
			if first, dup := domains[low]; dup {
				d.failKey(domKey, -1, "domain %q already has a key in msgauth.dkim_sign[%d]", low, first)
			} else {
				domains[low] = i
			}
		}
		s.Domain = low
		selKey := key.child("selector")
		switch {
		case s.Selector == "":
			d.fail(d.pos.line(key), fmt.Errorf("missing required key %q", selKey.String()))
		case !validDomain(strings.ToLower(s.Selector)):
			d.failKey(selKey, -1, "invalid selector %q (want DNS labels such as \"mail2026\")", s.Selector)
		}
		if s.KeyFile == "" {
			d.fail(d.pos.line(key), fmt.Errorf("missing required key %q", key.child("key_file").String()))
		} else if !d.skipFiles {
			// The key itself is read by msgauth, which knows its forms;
			// a file that is not there is the mistake to name at its line.
			if f, err := os.Open(s.KeyFile); err != nil {
				d.failKey(key.child("key_file"), -1, "%w", err)
			} else {
				f.Close()
			}
		}
	}
}

package config

import (
	"path/filepath"
	"strings"
)

// resolvePaths makes every relative path of a config file relative to
// the file's directory (d.base), before the checks that want them
// absolute: data_dir, log.dir, the TLS files (admin's too), the admin users file, the smarthost's password
// and CA files, DKIM keys, recipients files and Dovecot sockets, the
// auth backend's socket or passwd-file, the
// maildir_users file, and the unix: sockets of spamd, clamd and the
// milters. URLs (maildir://, lmtp+unix://) are absolute by their form.
func (d *decoder) resolvePaths(c *Config) {
	if d.base == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(d.base, *p)
		}
	}
	// prefixed resolves the path after one of prefixes ("unix:"), and
	// leaves any other value alone.
	prefixed := func(v *string, prefixes ...string) {
		for _, pre := range prefixes {
			if p, ok := strings.CutPrefix(*v, pre); ok && p != "" {
				abs(&p)
				*v = pre + p
				return
			}
		}
	}
	abs(&c.DataDir)
	prefixed(&c.Auth.Backend, "dovecot:", "passwd-file:")
	abs(&c.Log.Dir)
	abs(&c.TLS.Cert)
	abs(&c.TLS.Key)
	abs(&c.Admin.Cert)
	abs(&c.Admin.Key)
	abs(&c.Admin.Users)
	for i := range c.TLS.Certificates {
		abs(&c.TLS.Certificates[i].Cert)
		abs(&c.TLS.Certificates[i].Key)
	}
	abs(&c.Outbound.AuthPasswordFile)
	abs(&c.Outbound.CAFile)
	abs(&c.Auth.SenderMap)
	for i := range c.MsgAuth.DKIMSign {
		abs(&c.MsgAuth.DKIMSign[i].KeyFile)
	}
	for _, addrs := range []StringList{c.Spamd.Address, c.Clamd.Address} {
		for i := range addrs {
			prefixed(&addrs[i], "unix:")
		}
	}
	for i := range c.Milters {
		prefixed(&c.Milters[i].Address, "unix:")
	}
	stores := append([]*Downstream{&c.Downstream}, ptrs(c.Routes)...)
	for _, s := range stores {
		prefixed(&s.VerifyRecipients, "file:", "dovecot:")
		abs(&s.MaildirUsers)
	}
}

func ptrs[T any](s []T) []*T {
	p := make([]*T, len(s))
	for i := range s {
		p[i] = &s[i]
	}
	return p
}

package config

import (
	"net"
	"net/netip"
	"time"
)

// Admin is the admin listener ([admin]): /metrics, /healthz, /readyz and
// the console, over HTTP on loopback or HTTPS on any other address.
type Admin struct {
	// Listen is "HOST:PORT"; "" (the default) serves nothing. Restart to
	// change.
	Listen string `toml:"listen"`
	// Cert and Key are the listener's TLS certificate and key; absent,
	// a listener on a non-loopback address uses [tls] cert and key.
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// Timeout bounds reading a request and writing its reply, each;
	// default 30s.
	Timeout Duration `toml:"timeout"`
	// Users is the web console's admin users file: "name:hash" lines
	// (bcrypt or argon2id), as `mxgate admin passwd` writes them; "" (the
	// default): no console. Read again when it changes (checked in
	// console.go).
	Users string `toml:"users"`
	// SessionTimeout ends a console session idle that long; default 8h.
	SessionTimeout Duration `toml:"session_timeout"`
}

// checkAdmin checks [admin]: a listen address that is not loopback must
// have TLS, from [admin] or [tls], since the console's passwords and
// sessions would otherwise cross the network in clear.
func (d *decoder) checkAdmin(c *Config) {
	a := &c.Admin
	d.duration(keyPath{"admin", "timeout"}, &a.Timeout, 30*time.Second)
	switch {
	case a.Cert != "" && a.Key == "":
		d.failKey(keyPath{"admin", "cert"}, -1, "is set but admin.key is not")
	case a.Key != "" && a.Cert == "":
		d.failKey(keyPath{"admin", "key"}, -1, "is set but admin.cert is not")
	}
	if a.Listen == "" {
		return
	}
	key := keyPath{"admin", "listen"}
	if err := checkListenAddr(a.Listen); err != nil {
		d.failKey(key, -1, "%w", err)
		return
	}
	if cert, _ := c.AdminTLS(); cert == "" && !loopbackListen(a.Listen) {
		d.failKey(key, -1, "the admin listener on a non-loopback address needs TLS: set admin.cert and admin.key (or tls.cert and tls.key), or listen on 127.0.0.1")
	}
}

// AdminTLS is the certificate and key the admin listener serves with,
// both "" for plain HTTP: [admin]'s own, else [tls]'s when the listener
// is not on loopback.
func (c *Config) AdminTLS() (cert, key string) {
	a := &c.Admin
	switch {
	case a.Cert != "" && a.Key != "":
		return a.Cert, a.Key
	case a.Listen != "" && !loopbackListen(a.Listen) && c.TLS.Cert != "" && c.TLS.Key != "":
		return c.TLS.Cert, c.TLS.Key
	}
	return "", ""
}

// loopbackListen reports whether a listen address (checked by
// checkListenAddr) binds loopback only: 127.0.0.0/8, ::1 or "localhost".
// An empty host binds every address.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

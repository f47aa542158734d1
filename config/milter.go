package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Milter is one external milter ([[milter]]), the interface Postfix and
// Sendmail offer to rspamd, opendkim or clamav-milter. Milters are called
// in the order of the file, at every SMTP stage of every message.
type Milter struct {
	// Address is "inet:HOST:PORT" or "unix:/PATH", as Postfix's
	// smtpd_milters writes them.
	Address string `toml:"address"`
	Name    string `toml:"name"` // in log lines; default: the address; unique
	// OnError is what a failed milter (refused connection, timeout,
	// broken reply) makes of the message, Postfix's
	// milter_default_action: "tempfail" (default, 451 4.7.1), "accept"
	// (as if the milter were not configured) or "reject" (550 5.7.1).
	OnError        string   `toml:"on_error"`
	ConnectTimeout Duration `toml:"connect_timeout"` // connect and option negotiation; default 10s
	CommandTimeout Duration `toml:"command_timeout"` // each SMTP stage; default 30s
	EOMTimeout     Duration `toml:"eom_timeout"`     // the end of message, modifications included; default 120s
}

// checkMilters fills the defaults of every [[milter]] and checks it.
func (d *decoder) checkMilters(c *Config) {
	names := map[string]int{}
	for i := range c.Milters {
		m := &c.Milters[i]
		key := keyPath{"milter"}.index(i)
		addrKey := key.child("address")
		if m.Address == "" {
			d.fail(d.pos.line(key), fmt.Errorf("missing required key %q", addrKey.String()))
		} else if err := checkMilterAddr(m.Address); err != nil {
			d.failKey(addrKey, -1, "%w", err)
		}
		nameKey := key.child("name")
		switch {
		case !d.pos.has(nameKey):
			m.Name = m.Address
		case m.Name == "" || strings.ContainsFunc(m.Name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			d.failKey(nameKey, -1, "invalid name %q: it must be non-empty, without spaces or control characters", m.Name)
		}
		if first, dup := names[m.Name]; dup && m.Name != "" {
			d.failKey(nameKey, -1, "milter %q is already configured as milter[%d]", m.Name, first)
		} else {
			names[m.Name] = i
		}
		d.enum(key.child("on_error"), &m.OnError, "tempfail", "accept", "reject")
		d.duration(key.child("connect_timeout"), &m.ConnectTimeout, 10*time.Second)
		d.duration(key.child("command_timeout"), &m.CommandTimeout, 30*time.Second)
		d.duration(key.child("eom_timeout"), &m.EOMTimeout, 120*time.Second)
	}
}

// checkMilterAddr accepts Postfix's "inet:HOST:PORT" and "unix:/PATH".
func checkMilterAddr(a string) error {
	const forms = `want inet:HOST:PORT such as "inet:127.0.0.1:11332" or unix:/PATH such as "unix:/run/opendkim.sock"`
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("invalid address %q: the socket path must be absolute (%s)", a, forms)
		}
		return nil
	}
	hostPort, ok := strings.CutPrefix(a, "inet:")
	if !ok {
		return fmt.Errorf("invalid address %q (%s)", a, forms)
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || host == "" {
		return fmt.Errorf("invalid address %q (%s)", a, forms)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return fmt.Errorf("invalid port %q in address %q", port, a)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validDomain(strings.ToLower(host)) {
		return fmt.Errorf("invalid host %q in address %q", host, a)
	}
	return nil
}

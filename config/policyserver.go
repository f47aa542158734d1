package config

import (
	"path/filepath"
	"strings"
	"time"
)

// PolicyServer is Postfix's policy delegation server ([policy_server]):
// check_policy_service answered with the MAIL and RCPT stage checks.
type PolicyServer struct {
	// Listen is "HOST:PORT" or "unix:/PATH" (a relative path is relative
	// to the config file's directory); "" (the default) serves nothing.
	// Restart to change.
	Listen string `toml:"listen"`
	// DryRun logs what a refusal would have been ("dry run: would
	// have rejected ...") and answers DUNNO, so a site can watch before it
	// enforces.
	DryRun bool `toml:"dry_run"`
	// Timeout closes a connection silent that long, between requests or
	// in one; default 10m, past Postfix's smtpd_policy_service_max_idle
	// (300s), so Postfix is the one that closes an idle connection.
	Timeout Duration `toml:"timeout"`
	// TransactionTimeout forgets a transaction (Postfix's instance) no
	// request named that long, one whose END-OF-MESSAGE never came;
	// default 1h.
	TransactionTimeout Duration `toml:"transaction_timeout"`
}

// PolicyUnixPrefix marks a unix socket in policy_server.listen.
const PolicyUnixPrefix = "unix:"

// checkPolicyServer fills the defaults of [policy_server] and checks its
// listen address, which the server then trusts.
func (d *decoder) checkPolicyServer(c *Config) {
	p := &c.PolicyServer
	d.duration(keyPath{"policy_server", "timeout"}, &p.Timeout, 10*time.Minute)
	d.duration(keyPath{"policy_server", "transaction_timeout"}, &p.TransactionTimeout, time.Hour)
	if p.Listen == "" {
		return
	}
	key := keyPath{"policy_server", "listen"}
	if path, ok := strings.CutPrefix(p.Listen, PolicyUnixPrefix); ok {
		switch {
		case path == "":
			d.failKey(key, -1, "invalid address %q: unix: needs a socket path", p.Listen)
		case !filepath.IsAbs(path) && d.base != "":
			p.Listen = PolicyUnixPrefix + filepath.Join(d.base, path)
		}
		return
	}
	if err := checkListenAddr(p.Listen); err != nil {
		d.failKey(key, -1, "%w", err)
	}
}

// PolicyNetwork is the network and address policy_server.listen names,
// for net.Listen.
func (p PolicyServer) PolicyNetwork() (network, addr string) {
	if path, ok := strings.CutPrefix(p.Listen, PolicyUnixPrefix); ok {
		return "unix", path
	}
	return "tcp", p.Listen
}

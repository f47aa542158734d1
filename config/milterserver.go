package config

import "time"

// MilterServer is mxgate as a milter of another MTA ([milter_server]):
// Postfix's smtpd_milters (or Sendmail's INPUT_MAIL_FILTER) asks the
// check pipeline at each SMTP stage and applies its verdicts and header
// stamps.
type MilterServer struct {
	// Listen is "inet:HOST:PORT" or "unix:/PATH", as Postfix's
	// smtpd_milters writes it; "" (the default) = off. Restart to change.
	Listen string `toml:"listen"`
	// DryRun logs every verdict as it would be ("dry run: would reject
	// ...") and tells the MTA to go on; the message gets only an
	// X-mxgate-DryRun field saying what would have been done.
	DryRun bool `toml:"dry_run"`
	// Timeout is how long a milter connection may stay silent between
	// two of the MTA's commands (Postfix keeps it open for the whole SMTP
	// session, so at least its smtpd_timeout); default (and for 0) 10m.
	Timeout Duration `toml:"timeout"`
}

// checkMilterServer fills the defaults of [milter_server] and checks its
// address, which package miltersrv then trusts.
func (d *decoder) checkMilterServer(c *Config) {
	o := &c.MilterServer
	d.duration(keyPath{"milter_server", "timeout"}, &o.Timeout, 10*time.Minute)
	if o.Listen == "" {
		return
	}
	if err := checkMilterAddr(o.Listen); err != nil {
		d.failKey(keyPath{"milter_server", "listen"}, -1, "%w", err)
	}
}

package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Auth is SMTP AUTH on the submission listeners ([auth]): who may log in,
// what an authenticated client may send as, and how failed logins are
// throttled. With no backend, AUTH is offered nowhere.
type Auth struct {
	// Backend is where passwords are checked:
	// "dovecot:/run/dovecot/auth-client" (Dovecot's auth-client socket)
	// or "passwd-file:/etc/mxgate/passwd" (user:{SCHEME}hash or
	// user:$6$... lines).
	Backend string `toml:"backend"`
	// BackendKind and BackendPath are Backend taken apart: "dovecot" or
	// "passwd-file", and the path. Not printed.
	BackendKind string `toml:"-"`
	BackendPath string `toml:"-"`
	// SenderPolicy is what an authenticated client may use as envelope
	// sender and From:: "login_domain" (default: the login's domain),
	// "login" (the login itself) or "any".
	SenderPolicy string `toml:"sender_policy"`
	// SenderMap is a file of "LOGIN: ADDRESS, @DOMAIN, ..." lines (#
	// comments), Postfix's smtpd_sender_login_maps: what each login may
	// use besides what sender_policy gives it (a shared sales@ address,
	// another domain). Read at load and at reload.
	SenderMap string `toml:"sender_map"`
	// SenderLogins is SenderMap read: lower-cased login to the addresses
	// and "@domain"s it owns. Not printed.
	SenderLogins map[string][]string `toml:"-"`
	// SetSenderHeader adds "Sender: LOGIN" (replacing any Sender:) when
	// the From: address is not the login; default true.
	SetSenderHeader bool     `toml:"set_sender_header"`
	Timeout         Duration `toml:"timeout"`        // per backend check, connect included; default 10s
	FailDelay       Duration `toml:"fail_delay"`     // before each failed reply; default 2s, 0 = none
	MaxFailures     int      `toml:"max_failures"`   // failures per IP or per user within failure_window before a block; default 5
	FailureWindow   Duration `toml:"failure_window"` // default 15m
	BlockTime       Duration `toml:"block_time"`     // how long a blocked IP or user gets 421; default 15m
}

// Enabled tells whether AUTH is configured.
func (a *Auth) Enabled() bool { return a.Backend != "" }

// checkAuth fills the defaults of [auth] and takes its backend apart.
func (d *decoder) checkAuth(c *Config) {
	a := &c.Auth
	key := keyPath{"auth"}
	d.enum(key.child("sender_policy"), &a.SenderPolicy, "login_domain", "login", "any")
	if !d.pos.has(key.child("set_sender_header")) {
		a.SetSenderHeader = true
	}
	d.duration(key.child("timeout"), &a.Timeout, 10*time.Second)
	d.switchable(key.child("fail_delay"), &a.FailDelay, 2*time.Second)
	d.count(key.child("max_failures"), &a.MaxFailures, 5)
	d.duration(key.child("failure_window"), &a.FailureWindow, 15*time.Minute)
	d.duration(key.child("block_time"), &a.BlockTime, 15*time.Minute)
	if a.Backend != "" {
		kind, path, ok := strings.Cut(a.Backend, ":")
		if !ok || path == "" || (kind != "dovecot" && kind != "passwd-file") {
			d.failKey(key.child("backend"), -1, "invalid value %q (want \"dovecot:/path/to/auth-client\" or \"passwd-file:/path\")", a.Backend)
		} else {
			a.BackendKind, a.BackendPath = kind, path
		}
	}
	if a.SenderMap != "" {
		logins, err := readSenderMap(a.SenderMap)
		if err != nil {
			d.failKey(key.child("sender_map"), -1, "%w", err)
		}
		a.SenderLogins = logins
	}
	if len(c.ListenSubmission) > 0 {
		if c.TLS.Cert == "" || c.TLS.Key == "" {
			d.failKey(keyPath{"listen_submission"}, -1, "needs tls.cert and tls.key (AUTH only after STARTTLS)")
		}
		if a.Backend == "" {
			d.failKey(keyPath{"listen_submission"}, -1, "needs auth.backend")
		}
	}
}

// readSenderMap reads an auth.sender_map file; an error names FILE:LINE.
func readSenderMap(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	logins := map[string][]string{}
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		login, list, ok := strings.Cut(line, ":")
		login = strings.ToLower(strings.TrimSpace(login))
		if !ok || login == "" || strings.ContainsAny(login, " \t") {
			return nil, fmt.Errorf("%s:%d: want \"LOGIN: ADDRESS, @DOMAIN, ...\", got %q", path, i+1, line)
		}
		for _, a := range strings.Split(list, ",") {
			a = strings.ToLower(strings.TrimSpace(a))
			if a == "" {
				continue
			}
			if !strings.Contains(a, "@") || strings.ContainsAny(a, " \t<>") {
				return nil, fmt.Errorf("%s:%d: %q is not an address or @domain", path, i+1, a)
			}
			logins[login] = append(logins[login], a)
		}
	}
	return logins, nil
}

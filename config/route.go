package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Names a [[route]] cannot take: the default route and the outbound
// routers are logged as R= under them.
var reservedRouteNames = []string{"downstream", "dnslookup", "smarthost"}

// checkRoutes checks [downstream] and every [[route]]: each a store, the
// routes with their domains, no domain in two routes.
func (d *decoder) checkRoutes(c *Config) {
	d.checkStore(keyPath{"downstream"}, &c.Downstream, false)
	owner := map[string]int{}
	names := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		key := keyPath{"route"}.index(i)
		d.checkStore(key, r, true)
		domKey := key.child("domains")
		if len(r.Domains) == 0 {
			d.fail(d.pos.line(key), fmt.Errorf("missing required key %q: the recipient domains this route takes", domKey.String()))
		}
		for j, dom := range r.Domains {
			low := strings.ToLower(dom)
			if !validDomain(low) {
				d.failKey(domKey, j, "invalid domain name %q", dom)
				continue
			}
			r.Domains[j] = low
			if first, dup := owner[low]; dup {
				d.failKey(domKey, j, "domain %q is already routed by route[%d]", low, first)
				continue
			}
			owner[low] = i
		}
		nameKey := key.child("name")
		switch {
		case !d.pos.has(nameKey) && len(r.Domains) > 0:
			r.Name = r.Domains[0]
		case d.pos.has(nameKey) && (r.Name == "" || strings.ContainsFunc(r.Name, func(r rune) bool { return r <= ' ' || r == 0x7f })):
			d.failKey(nameKey, -1, "invalid name %q: it must be non-empty, without spaces or control characters", r.Name)
		}
		for _, n := range reservedRouteNames {
			if r.Name == n {
				d.failKey(nameKey, -1, "name %q is reserved (the routers %q are built in)", r.Name, reservedRouteNames)
			}
		}
		if first, dup := names[r.Name]; dup && r.Name != "" && d.pos.has(nameKey) {
			d.failKey(nameKey, -1, "route name %q is already used by route[%d]", r.Name, first)
		} else {
			names[r.Name] = i
		}
	}
}

// checkStore fills the defaults of one store and checks it; route says it
// is a [[route]], which alone may have a name and domains.
func (d *decoder) checkStore(key keyPath, s *Downstream, route bool) {
	if !route {
		for _, k := range []string{"name", "domains"} {
			if d.pos.has(key.child(k)) {
				d.failKey(key.child(k), -1, "is only valid in a [[route]]; [downstream] takes every relay domain no route names")
			}
		}
	}
	urlKey := key.child("url")
	if s.URL == "" {
		d.fail(d.pos.line(urlKey), fmt.Errorf("missing required key %q", urlKey.String()))
	} else if t, err := parseDownstreamURL(s.URL); err != nil {
		d.failKey(urlKey, -1, "%w", err)
	} else {
		s.Target = t
	}
	d.duration(key.child("connect_timeout"), &s.ConnectTimeout, 30*time.Second)
	d.duration(key.child("command_timeout"), &s.CommandTimeout, 5*time.Minute)
	d.duration(key.child("data_timeout"), &s.DataTimeout, 10*time.Minute)
	// A store under a burst gets the next message on the connection of
	// the last; once the burst is over, 10s frees the store's process per
	// connection (Postfix smtpd, Dovecot lmtp) well before the store's own
	// idle timeout (5m) would close it under us.
	d.duration(key.child("idle_timeout"), &s.IdleTimeout, 10*time.Second)
	d.count(key.child("max_connections"), &s.MaxConnections, 20)
	d.count(key.child("max_messages_per_connection"), &s.MaxMessagesPerConnection, 100)
	d.enum(key.child("starttls"), &s.StartTLS, "opportunistic", "none", "required")
	d.enum(key.child("over_quota"), &s.OverQuota, "defer", "bounce", "discard")

	verifyKey := key.child("verify_recipients")
	if s.VerifyRecipients == "" {
		s.VerifyRecipients = "none"
	}
	if v, err := parseVerify(s.VerifyRecipients); err != nil {
		d.failKey(verifyKey, -1, "%w", err)
	} else {
		s.Verify = v
		if v.Source == "callout" && s.Target.Scheme == "maildir" {
			d.failKey(verifyKey, -1, "callout asks the store by RCPT TO, and a maildir:// store has no server to ask: use \"file:PATH\" or \"dovecot:PATH\"")
		}
		// Read at each lookup, so a missing list is no reason not to
		// start; but until it is there the store takes no mail.
		if _, err := os.Stat(v.Path); v.Source == "file" && err != nil {
			d.warn(verifyKey, -1, "%v: every recipient of this store gets 451 until it can be read", err)
		}
	}

	delimKey := key.child("recipient_delimiter")
	if !d.pos.has(delimKey) {
		s.RecipientDelimiter = "+"
	} else if strings.ContainsFunc(s.RecipientDelimiter, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || r == '@' || r == '"' || r == '\\' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	}) {
		d.failKey(delimKey, -1, "invalid delimiter %q: punctuation characters only, such as \"+\" or \"+-\"; \"\" for none", s.RecipientDelimiter)
	}
	if !d.pos.has(key.child("lowercase_local")) {
		s.LowercaseLocal = true
	}
	d.checkMaildir(key, s)
}

// maildirKeys are the keys only a maildir:// store reads.
var maildirKeys = []string{"maildir_layout", "maildir_users", "maildir_owner", "maildir_mode"}

// layoutField matches a {field} of a Maildir layout.
var layoutField = regexp.MustCompile(`\{[^{}]*\}`)

func (d *decoder) checkMaildir(key keyPath, s *Downstream) {
	s.MaildirUID, s.MaildirGID = -1, -1
	if s.Target.Scheme != "maildir" {
		for _, k := range maildirKeys {
			if d.pos.has(key.child(k)) && s.URL != "" && s.Target.Scheme != "" {
				d.failKey(key.child(k), -1, "is only read for a maildir:// url, and this store is %s://", s.Target.Scheme)
			}
		}
		return
	}
	layoutKey := key.child("maildir_layout")
	if s.MaildirLayout == "" {
		s.MaildirLayout = "{domain}/{local}"
	}
	if err := checkLayout(s.MaildirLayout); err != nil {
		d.failKey(layoutKey, -1, "%w", err)
	} else if strings.Contains(s.MaildirLayout, "{user}") && s.MaildirUsers == "" {
		d.failKey(layoutKey, -1, "uses {user}, which needs %s (a file of \"domain: user\" lines such as /etc/userdomains)", key.child("maildir_users"))
	}
	if s.MaildirUsers != "" && !filepath.IsAbs(s.MaildirUsers) {
		d.failKey(key.child("maildir_users"), -1, "path %q must be absolute", s.MaildirUsers)
	} else if _, err := os.Stat(s.MaildirUsers); s.MaildirUsers != "" && err != nil {
		// Read at each delivery, as the previous key's list.
		d.warn(key.child("maildir_users"), -1, "%v: deliveries that need {user} are deferred until it can be read", err)
	}
	switch {
	case s.MaildirOwner == OwnerUser:
		// Looked up per delivery: accounts come and go without a restart.
		if !strings.Contains(s.MaildirLayout, "{user}") {
			d.failKey(key.child("maildir_owner"), -1, "is %q, and %s has no {user} to take the owner from", OwnerUser, layoutKey)
		}
		s.MaildirOwnerUser = true
	case s.MaildirOwner != "":
		uid, gid, err := lookupOwner(s.MaildirOwner)
		if err != nil {
			d.failKey(key.child("maildir_owner"), -1, "%w", err)
		}
		s.MaildirUID, s.MaildirGID = uid, gid
	}
	modeKey := key.child("maildir_mode")
	if s.MaildirMode == "" {
		s.MaildirMode = "0700"
	}
	if m, err := strconv.ParseUint(s.MaildirMode, 8, 32); err != nil || m > 0o777 || m&0o700 != 0o700 {
		d.failKey(modeKey, -1, "invalid mode %q (want octal between \"0700\" and \"0777\": the owner needs rwx)", s.MaildirMode)
	}
}

// checkLayout accepts a Maildir layout template: {domain}, {local} and
// {user} only, {local} required, no "." or ".." segment.
func checkLayout(t string) error {
	for _, f := range layoutField.FindAllString(t, -1) {
		switch f {
		case "{domain}", "{local}", "{user}":
		default:
			return fmt.Errorf("invalid layout %q: unknown field %s (want {domain}, {local} or {user})", t, f)
		}
	}
	if rest := layoutField.ReplaceAllString(t, ""); strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("invalid layout %q: unbalanced braces", t)
	}
	if !strings.Contains(t, "{local}") {
		return fmt.Errorf("invalid layout %q: it must contain {local}, or every recipient shares one Maildir", t)
	}
	for seg := range strings.SplitSeq(strings.Trim(t, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("invalid layout %q: empty, \".\" and \"..\" segments are not allowed", t)
		}
	}
	return nil
}

// lookupOwner reads "user:group" (names or numeric IDs) as a uid and gid.
func lookupOwner(s string) (uid, gid int, err error) {
	un, gn, ok := strings.Cut(s, ":")
	if !ok || un == "" || gn == "" {
		return -1, -1, fmt.Errorf("invalid owner %q (want \"user:group\", or \"{user}\" with a {user} layout)", s)
	}
	u, err := lookupUser(un)
	if err != nil {
		return -1, -1, fmt.Errorf("invalid owner %q: %w", s, err)
	}
	g, err := lookupGroup(gn)
	if err != nil {
		return -1, -1, fmt.Errorf("invalid owner %q: %w", s, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid, nil
}

// parseVerify takes verify_recipients apart.
func parseVerify(s string) (Verify, error) {
	const forms = `want "none", "callout", "file:/PATH" or "dovecot:/PATH"`
	switch s {
	case "none", "callout":
		return Verify{Source: s}, nil
	}
	src, path, ok := strings.Cut(s, ":")
	if !ok || (src != "file" && src != "dovecot") {
		return Verify{}, fmt.Errorf("invalid source %q (%s)", s, forms)
	}
	if !filepath.IsAbs(path) {
		return Verify{}, fmt.Errorf("invalid source %q: the path must be absolute (%s)", s, forms)
	}
	return Verify{Source: src, Path: filepath.Clean(path)}, nil
}

// checkOutbound fills the defaults of [outbound] and checks them.
func (d *decoder) checkOutbound(c *Config) {
	o := &c.Outbound
	key := keyPath{"outbound"}
	d.enum(key.child("mode"), &o.Mode, "mx", "smarthost", "none")
	hostKey := key.child("smarthost")
	switch {
	case o.Mode == "smarthost" && o.Smarthost == "":
		d.fail(d.pos.line(key.child("mode")), fmt.Errorf("outbound.mode = \"smarthost\" needs %s", hostKey))
	case o.Smarthost != "":
		if t, err := parseSmarthost(o.Smarthost); err != nil {
			d.failKey(hostKey, -1, "%w", err)
		} else {
			o.SmarthostTarget = t
		}
	}
	userKey, passKey := key.child("auth_user"), key.child("auth_password_file")
	switch {
	case o.AuthUser != "" && o.AuthPasswordFile == "":
		d.failKey(userKey, -1, "is set but %s is not", passKey)
	case o.AuthUser == "" && o.AuthPasswordFile != "":
		d.failKey(passKey, -1, "is set but %s is not", userKey)
	case o.AuthPasswordFile != "" && !d.skipFiles:
		data, err := os.ReadFile(o.AuthPasswordFile)
		if err != nil {
			d.failKey(passKey, -1, "%w", err)
			break
		}
		pw, _, _ := strings.Cut(string(data), "\n")
		o.AuthPassword = strings.TrimSuffix(pw, "\r")
		if o.AuthPassword == "" {
			d.failKey(passKey, -1, "file %s holds no password on its first line", o.AuthPasswordFile)
		}
	}
	tlsKey := key.child("starttls")
	if o.StartTLS == "" && o.Mode == "smarthost" {
		o.StartTLS = "required"
	}
	d.enum(tlsKey, &o.StartTLS, "opportunistic", "required", "none")
	if o.AuthPassword != "" && o.StartTLS != "required" && o.SmarthostTarget.Scheme != "smtps" {
		d.failKey(tlsKey, -1, "is %q, and a password is sent only over TLS: set starttls = \"required\" or use smtps://", o.StartTLS)
	}
	d.resolvers(key.child("resolver"), &o.Resolver, o.Mode == "mx")
	portKey := key.child("port")
	switch {
	case !d.pos.has(portKey):
		o.Port = 25
	case o.Port < 1 || o.Port > 65535:
		d.failKey(portKey, -1, "invalid port %d (want 1-65535)", o.Port)
	}
	d.enum(key.child("mta_sts"), &o.MTASTS, "off", "testing", "enforce")
	stsPortKey := key.child("mta_sts_port")
	switch {
	case !d.pos.has(stsPortKey):
		o.MTASTSPort = 443
	case o.MTASTSPort < 1 || o.MTASTSPort > 65535:
		d.failKey(stsPortKey, -1, "invalid port %d (want 1-65535)", o.MTASTSPort)
	}
	if o.CAFile != "" && !d.skipFiles {
		if _, err := os.Stat(o.CAFile); err != nil {
			d.failKey(key.child("ca_file"), -1, "%w", err)
		}
	}
	d.count(key.child("max_per_domain"), &o.MaxPerDomain, 10)
	// Other people's servers: hold their connection slots briefly, as
	// Postfix does.
	d.duration(key.child("idle_timeout"), &o.IdleTimeout, 2*time.Second)
	d.count(key.child("max_messages_per_connection"), &o.MaxMessagesPerConnection, 100)
	d.duration(key.child("connect_timeout"), &o.ConnectTimeout, 30*time.Second)
	d.duration(key.child("command_timeout"), &o.CommandTimeout, 5*time.Minute)
	d.duration(key.child("data_timeout"), &o.DataTimeout, 10*time.Minute)
}

// parseSmarthost accepts smtp://HOST:PORT and smtps://HOST:PORT. The
// password lives in its own file, never in the URL, which config check
// prints.
func parseSmarthost(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("invalid URL %q (want smtp://HOST:PORT or smtps://HOST:PORT)", raw)
	}
	if u.User != nil {
		return Target{}, fmt.Errorf("invalid URL %q: put the user in outbound.auth_user and the password in outbound.auth_password_file", u.Redacted())
	}
	scheme := u.Scheme
	if scheme == "smtps" {
		u.Scheme = "smtp"
	}
	if scheme != "smtp" && scheme != "smtps" {
		return Target{}, fmt.Errorf("unsupported URL %q (want smtp://HOST:PORT or smtps://HOST:PORT)", raw)
	}
	t, err := parseDownstreamURL(u.String())
	if err != nil {
		return Target{}, err
	}
	t.Scheme = scheme
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return Target{}, fmt.Errorf("invalid URL %q: needs HOST:PORT", raw)
	}
	return t, nil
}

// checkRecipientVerify fills the defaults of [recipient_verify].
func (d *decoder) checkRecipientVerify(c *Config) {
	v := &c.RecipientVerify
	key := keyPath{"recipient_verify"}
	d.duration(key.child("timeout"), &v.Timeout, 10*time.Second)
	d.duration(key.child("positive_ttl"), &v.PositiveTTL, time.Hour)
	d.duration(key.child("negative_ttl"), &v.NegativeTTL, 10*time.Minute)
	d.count(key.child("cache_size"), &v.CacheSize, 100000)
	d.count(key.child("max_connections"), &v.MaxConnections, 10)
	d.duration(key.child("idle_timeout"), &v.IdleTimeout, 30*time.Second)
}

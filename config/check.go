package config

import (
	"cmp"
	"fmt"
	"mxgate/retry"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Defaults of the values that have one. Timeouts follow Exim where it has an
// equivalent (smtp_receive_timeout 5m; the retry rule is retry.Default).
const (
	defaultListen         = "127.0.0.1:2525"
	defaultDataDir        = "var"
	defaultMaxMessageSize = 50 << 20
	// defaultReadyMax message IDs (about 100 KiB) keep 20 delivery slots
	// busy through any burst one commit batch brings.
	defaultReadyMax = 4096
	maxReadyMax     = 1 << 20
	// The spool's reserve (Exim's check_spool_space and _inodes, which
	// default to off): room for the queue to drain and the logs to be
	// written while new mail waits.
	defaultMinFreeSpace  = 100 << 20
	defaultMinFreeInodes = 1000
)

// installedDataDir and installedLogDir are the defaults of data_dir and
// log.dir in an installed build: the packaging script sets them at link
// time (-X mxgate/config.installedDataDir=/var/spool/mxgate, and
// installedLogDir=/var/log/mxgate), so a config file that leaves them out
// still puts the spool and the logs where the system unit lets the
// daemon write. Empty in a plain go build: data_dir is then "var" beside
// the config file, log.dir DATA_DIR/log.
var installedDataDir, installedLogDir string

// check fills defaults and reports every value that is out of range, every
// required key that is missing and every combination that cannot work.
func (d *decoder) check(c *Config) {
	if c.DataDir == "" {
		c.DataDir = cmp.Or(installedDataDir, defaultDataDir)
	}
	if c.Log.Dir == "" {
		c.Log.Dir = installedLogDir
	}
	d.resolvePaths(c)
	d.checkHostname(c)
	d.checkListen(c)
	d.checkTLS(c)
	d.checkUser(c)

	d.count(keyPath{"smtp", "max_recipients"}, &c.SMTP.MaxRecipients, 100)
	d.count(keyPath{"smtp", "max_connections"}, &c.SMTP.MaxConnections, 1000)
	d.count(keyPath{"smtp", "max_connections_per_ip"}, &c.SMTP.MaxConnectionsPerIP, 20)
	d.count(keyPath{"smtp", "max_errors"}, &c.SMTP.MaxErrors, 10)
	d.count(keyPath{"smtp", "max_line_length"}, &c.SMTP.MaxLineLength, 10000)
	d.size(keyPath{"smtp", "max_message_size"}, &c.SMTP.MaxMessageSize, defaultMaxMessageSize)
	d.duration(keyPath{"smtp", "command_timeout"}, &c.SMTP.CommandTimeout, 5*time.Minute)
	d.duration(keyPath{"smtp", "data_timeout"}, &c.SMTP.DataTimeout, 5*time.Minute)
	d.duration(keyPath{"smtp", "shutdown_timeout"}, &c.SMTP.ShutdownTimeout, 30*time.Second)
	d.enum(keyPath{"smtp", "bare_newline"}, &c.SMTP.BareNewline, "reject", "normalize")

	d.checkRelay(c)
	d.checkRBL(c)
	d.checkHostLookup(c)
	d.checkCallout(c)
	d.checkFilters(c)
	d.checkMsgAuth(c)
	d.checkMilters(c)

	d.checkRoutes(c)
	d.checkOutbound(c)
	d.checkRecipientVerify(c)
	d.checkRateLimits(c)
	d.checkGreylist(c)
	d.checkAuth(c)

	if c.Queue.Retry == "" {
		c.Queue.Retry = retry.Default
	}
	if sched, err := retry.Parse(c.Queue.Retry); err != nil {
		d.failKey(keyPath{"queue", "retry"}, -1, err.Error())
	} else {
		c.Queue.Schedule = sched
	}
	d.duration(keyPath{"queue", "run_interval"}, &c.Queue.RunInterval, time.Minute)
	d.count(keyPath{"queue", "max_parallel"}, &c.Queue.MaxParallel, 20)
	d.count(keyPath{"queue", "ready_max"}, &c.Queue.ReadyMax, defaultReadyMax)
	if c.Queue.ReadyMax > maxReadyMax {
		// Past this the bound no longer bounds anything worth having.
		d.failKey(keyPath{"queue", "ready_max"}, -1, "must be at most %d, got %d", maxReadyMax, c.Queue.ReadyMax)
	}
	d.switchable(keyPath{"queue", "delay_warning"}, &c.Queue.DelayWarning, 24*time.Hour)
	d.switchable(keyPath{"queue", "timeout_frozen_after"}, &c.Queue.TimeoutFrozenAfter, 0)

	d.checkSpool(c)
	d.checkState(c)
	d.checkAdmin(c)
	d.checkTracking(c)
	d.checkConsole(c)
	d.checkPolicyServer(c)

	if c.Log.Dir == "" {
		c.Log.Dir = filepath.Join(c.DataDir, "log")
	}
	d.enum(keyPath{"log", "format"}, &c.Log.Format, "exim", "json")
	d.checkDigest(c)
}

func (d *decoder) count(key keyPath, v *int, def int) {
	switch {
	case *v < 0:
		d.failKey(key, -1, "must not be negative, got %d", *v)
	case *v == 0:
		*v = def
	}
}

func (d *decoder) size(key keyPath, v *Size, def Size) {
	switch {
	case *v < 0:
		d.failKey(key, -1, "must not be negative, got %d", *v)
	case *v == 0:
		*v = def
	}
}

func (d *decoder) duration(key keyPath, v *Duration, def time.Duration) {
	switch {
	case *v < 0:
		d.failKey(key, -1, "must not be negative, got %q", *v)
	case *v == 0:
		*v = Duration(def)
	}
}

// switchable is a duration for which an explicit 0 means "off", as in
// Exim: the default applies only when the key is absent.
func (d *decoder) switchable(key keyPath, v *Duration, def time.Duration) {
	switch {
	case *v < 0:
		d.failKey(key, -1, "must not be negative, got %q", *v)
	case !d.pos.has(key):
		*v = Duration(def)
	}
}

// enum checks *v against the allowed values; the first one is the default.
func (d *decoder) enum(key keyPath, v *string, allowed ...string) {
	if *v == "" {
		*v = allowed[0]
		return
	}
	for _, a := range allowed {
		if *v == a {
			return
		}
	}
	want := strconv.Quote(allowed[0])
	for i, a := range allowed[1:] {
		sep := ", "
		if i == len(allowed)-2 {
			sep = " or "
		}
		want += sep + strconv.Quote(a)
	}
	d.failKey(key, -1, "invalid value %q (want %s)", *v, want)
}

func (d *decoder) checkHostname(c *Config) {
	key := keyPath{"hostname"}
	if c.Hostname != "" {
		if !validDomain(c.Hostname) {
			d.failKey(key, -1, "invalid host name %q", c.Hostname)
		}
		return
	}
	h, err := os.Hostname()
	if err != nil {
		d.fail(0, fmt.Errorf("hostname is not set and the system host name is unknown (%w); set hostname", err))
		return
	}
	if !validDomain(h) {
		d.fail(0, fmt.Errorf("hostname is not set and the system host name %q is not a valid domain name; set hostname", h))
		return
	}
	c.Hostname = h
}

func (d *decoder) checkListen(c *Config) {
	if c.Listen == nil && !d.pos.has(keyPath{"listen"}) {
		c.Listen = []string{defaultListen}
	}
	seen := map[string]bool{}
	for _, l := range []struct {
		key   keyPath
		addrs []string
	}{{keyPath{"listen"}, c.Listen}, {keyPath{"listen_tls"}, c.ListenTLS}, {keyPath{"listen_submission"}, c.ListenSubmission}} {
		for i, a := range l.addrs {
			if err := checkListenAddr(a); err != nil {
				d.failKey(l.key, i, "%w", err)
				continue
			}
			if seen[a] {
				d.failKey(l.key, i, "address %q is listed twice", a)
			}
			seen[a] = true
		}
	}
	// listen = [] beside a policy server: serve runs only that.
	if len(c.Listen) == 0 && len(c.ListenTLS) == 0 && c.PolicyServer.Listen == "" {
		d.failKey(keyPath{"listen"}, -1, "no listen address: listen and listen_tls are both empty (and no policy_server.listen)")
	}
}

// checkListenAddr accepts what net.Listen("tcp", a) accepts, minus service
// names: a port number is unambiguous in a config file.
func checkListenAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("invalid listen address %q (want HOST:PORT, e.g. \"127.0.0.1:25\" or \"[::1]:25\")", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || port != strconv.Itoa(n) {
		return fmt.Errorf("invalid port %q in listen address %q", port, a)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validDomain(host) {
		return fmt.Errorf("invalid host %q in listen address %q", host, a)
	}
	return nil
}

func (d *decoder) checkTLS(c *Config) {
	switch {
	case c.TLS.Cert != "" && c.TLS.Key == "":
		d.failKey(keyPath{"tls", "cert"}, -1, "is set but tls.key is not")
	case c.TLS.Key != "" && c.TLS.Cert == "":
		d.failKey(keyPath{"tls", "key"}, -1, "is set but tls.cert is not")
	}
	if len(c.ListenTLS) > 0 && (c.TLS.Cert == "" || c.TLS.Key == "") {
		d.failKey(keyPath{"listen_tls"}, -1, "needs tls.cert and tls.key")
	}
	for i, tc := range c.TLS.Certificates {
		key := keyPath{"tls", "certificate"}.index(i)
		switch {
		case tc.Cert == "":
			d.failKey(key, -1, "needs cert")
		case tc.Key == "":
			d.failKey(key, -1, "needs key")
		}
	}
	// The default answers a client without SNI or with a name no other
	// certificate holds: there must be one.
	if len(c.TLS.Certificates) > 0 && (c.TLS.Cert == "" || c.TLS.Key == "") {
		d.failKey(keyPath{"tls", "certificate"}, -1, "needs the default certificate tls.cert and tls.key")
	}
	if !d.skipFiles {
		d.checkTLSFiles(c)
	}
}

func (d *decoder) checkRelay(c *Config) {
	key := keyPath{"relay", "domains"}
	for i, dom := range c.Relay.Domains {
		low := strings.ToLower(dom)
		switch {
		case strings.HasSuffix(low, ".") && validDomain(strings.TrimSuffix(low, ".")):
			d.failKey(key, i, "invalid domain name %q: remove the trailing dot", dom)
		case !validDomain(low):
			d.failKey(key, i, "invalid domain name %q", dom)
		}
		c.Relay.Domains[i] = low
	}
	if len(c.Relay.Domains) == 0 && len(c.Relay.TrustedNetworks) == 0 {
		// Refusing to start beats an MTA that accepts mail for nobody,
		// or, worse, is tempted to accept for everybody.
		d.fail(d.pos.line(keyPath{"relay"}), fmt.Errorf("missing required key %q or %q", "relay.domains", "relay.trusted_networks"))
	}
}

// checkRBL fills the defaults of [rbl] and checks every list.
func (d *decoder) checkRBL(c *Config) {
	r := &c.RBL
	for i := range r.Lists {
		d.checkRBLList(keyPath{"rbl", "list"}.index(i), &r.Lists[i])
	}
	d.resolvers(keyPath{"rbl", "resolver"}, &r.Resolver, len(r.Lists) > 0)

	// Scores are compared with >=, so a threshold below 1 would refuse
	// (or stamp) clients that no list names.
	rejectKey, tagKey := keyPath{"rbl", "reject_score"}, keyPath{"rbl", "tag_score"}
	if !d.pos.has(rejectKey) {
		r.RejectScore = 1
	} else if r.RejectScore < 1 {
		d.failKey(rejectKey, -1, "must be at least 1, got %d (a lower score refuses clients that no list names)", r.RejectScore)
	}
	switch {
	case !d.pos.has(tagKey):
		r.TagScore = r.RejectScore
	case r.TagScore < 1:
		d.failKey(tagKey, -1, "must be at least 1, got %d (a lower score stamps clients that no list names)", r.TagScore)
	case r.RejectScore >= 1 && r.TagScore > r.RejectScore:
		d.failKey(tagKey, -1, "%d is above rbl.reject_score %d: no message would be stamped", r.TagScore, r.RejectScore)
	}

	d.duration(keyPath{"rbl", "timeout"}, &r.Timeout, 2*time.Second)
	d.enum(keyPath{"rbl", "reject_at"}, &r.RejectAt, "rcpt", "connect")
	d.count(keyPath{"rbl", "cache_size"}, &r.CacheSize, 10000)
	d.duration(keyPath{"rbl", "min_ttl"}, &r.MinTTL, 30*time.Second)
	d.duration(keyPath{"rbl", "max_ttl"}, &r.MaxTTL, time.Hour)
	if r.MinTTL > r.MaxTTL {
		d.failKey(keyPath{"rbl", "min_ttl"}, -1, "%q is above rbl.max_ttl %q", r.MinTTL, r.MaxTTL)
	}
}

func (d *decoder) checkRBLList(key keyPath, l *RBLList) {
	zoneKey := key.child("zone")
	low := strings.ToLower(l.Zone)
	switch {
	case l.Zone == "":
		d.fail(d.pos.line(zoneKey), fmt.Errorf("missing required key %q", zoneKey.String()))
	case strings.HasSuffix(low, ".") && validDomain(strings.TrimSuffix(low, ".")):
		d.failKey(zoneKey, -1, "invalid zone %q: remove the trailing dot", l.Zone)
	case !validDomain(low):
		d.failKey(zoneKey, -1, "invalid zone %q", l.Zone)
	}
	l.Zone = low
	d.enum(key.child("kind"), &l.Kind, "ip", "sender_domain", "helo")
	for i, m := range l.Match {
		if err := checkMatch(m); err != nil {
			d.failKey(key.child("match"), i, "%w", err)
		}
	}
	weightKey := key.child("weight")
	switch {
	case !d.pos.has(weightKey):
		l.Weight = 1
	case l.Weight == 0:
		d.failKey(weightKey, -1, "must not be 0: the list would count for nothing (negative for an allow-list)")
	}
	d.enum(key.child("on_error"), &l.OnError, "ignore", "tempfail")
}

// checkMatch accepts the three forms of a list's return-code filter. Only
// answers in 127.0.0.0/8 are ever listings, so anything else could never
// match.
func checkMatch(m string) error {
	const want = `want an address in 127.0.0.0/8 such as "127.0.0.2", a range "127.0.0.4-127.0.0.11" or a bitmask "&0.0.0.4"`
	if mask, ok := strings.CutPrefix(m, "&"); ok {
		a, err := netip.ParseAddr(mask)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			return fmt.Errorf("invalid bitmask %q (%s)", m, want)
		}
		return nil
	}
	answer := func(s string) (netip.Addr, bool) {
		a, err := netip.ParseAddr(s)
		return a, err == nil && a.Is4() && a.As4()[0] == 127
	}
	from, to, isRange := strings.Cut(m, "-")
	lo, ok := answer(from)
	if !isRange {
		if !ok {
			return fmt.Errorf("invalid answer %q (%s)", m, want)
		}
		return nil
	}
	hi, ok2 := answer(to)
	if !ok || !ok2 || hi.Less(lo) {
		return fmt.Errorf("invalid range %q (%s)", m, want)
	}
	return nil
}

// parseDownstreamURL accepts the four forms the deliver package implements
// and takes the URL apart for it.
func parseDownstreamURL(raw string) (Target, error) {
	const forms = "want smtp://HOST:PORT, lmtp://HOST:PORT, lmtp+unix:///PATH or maildir:///PATH"
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("invalid URL %q (%s)", raw, forms)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("invalid URL %q: user, query and fragment are not supported (%s)", raw, forms)
	}
	switch u.Scheme {
	case "smtp", "lmtp":
		if u.Path != "" && u.Path != "/" {
			return Target{}, fmt.Errorf("invalid URL %q: %s:// takes no path (%s)", raw, u.Scheme, forms)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			return Target{}, fmt.Errorf("invalid URL %q: %s:// needs HOST:PORT (%s)", raw, u.Scheme, forms)
		}
		if _, err := netip.ParseAddr(host); err != nil && !validDomain(host) {
			return Target{}, fmt.Errorf("invalid URL %q: invalid host %q", raw, host)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("invalid URL %q: invalid port %q", raw, port)
		}
		return Target{Scheme: u.Scheme, Host: host, Port: n}, nil
	case "lmtp+unix", "maildir":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return Target{}, fmt.Errorf("invalid URL %q: %s:// needs an absolute path, as in %s:///var/mail (%s)", raw, u.Scheme, u.Scheme, forms)
		}
		return Target{Scheme: u.Scheme, Path: filepath.Clean(u.Path)}, nil
	}
	return Target{}, fmt.Errorf("unsupported URL %q (%s)", raw, forms)
}

// validDomain accepts an LDH domain name (RFC 1123 host name syntax) without
// a trailing dot; international names must be given in their xn-- form.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// checkSpool fills spool.sync. The default is fdatasync, by measurement
// (BenchmarkCommit by scripts/bench-sync.sh: 4 KiB messages, ext4 on a
// virtio disk, 2 cores shared with other engineers' benchmarks, so the
// ranges are wide). Commits/s, median [range] of 6 interleaved rounds,
// fdatasync against syncfs:
//
//	                    1 committer        20                 200
//	idle     fdatasync  255 [129-482]      420 [318-810]      445 [204-791]
//	         syncfs     236 [96-598]       378 [198-859]      397 [238-1492]
//	writer   fdatasync   91 [42-258]       149 [120-269]      339 [247-505]
//	400MiB/s syncfs      68 [35-153]       248 [118-539]      360 [215-1423]
//
// Idle, fdatasync's median is ahead at every count (p99 at 200: 770 ms
// against 1138 ms). Beside a steady writer neither wins throughout (at
// 100 MiB/s too: 30/121/110 against 40/106/229): the disk writes the
// other program's pages either way, and syncfs merely does it inside the
// commit. Beside a burst (dd dirtying 2 GiB, 1 committer) the worst
// commit took 378-597 ms against 849-1440 ms. What syncfs costs grows
// with every other program's dirty pages on the filesystem; what
// fdatasync costs, only with the spool's own batch.
func (d *decoder) checkSpool(c *Config) {
	d.enum(keyPath{"spool", "sync"}, &c.Spool.Sync, "fdatasync", "syncfs")
	// An explicit 0 turns a reserve off, as in Exim; only an absent key
	// gets the default.
	if key := (keyPath{"spool", "min_free_space"}); c.Spool.MinFreeSpace < 0 {
		d.failKey(key, -1, "must not be negative, got %d", c.Spool.MinFreeSpace)
	} else if !d.pos.has(key) {
		c.Spool.MinFreeSpace = defaultMinFreeSpace
	}
	if key := (keyPath{"spool", "min_free_inodes"}); c.Spool.MinFreeInodes < 0 {
		d.failKey(key, -1, "must not be negative, got %d", c.Spool.MinFreeInodes)
	} else if !d.pos.has(key) {
		c.Spool.MinFreeInodes = defaultMinFreeInodes
	}
}

// Package config owns mxgate's TOML configuration file: the schema, the
// embedded default, strict parsing (an unknown key or a bad value is an error
// naming file:line and the key, with the key probably meant; what works
// but was probably not meant is a Warning), loading the files it names
// (TLS certificates and keys, DKIM keys) and printing the effective
// configuration in the units it was written in.
//
// It is the only home of defaults and validation: the packages that the
// values configure (deliver, the filters, the milter host, rbl, callout,
// msgauth, gateway) take them as given. What they need parsed is parsed
// here, once: the downstream URL (Downstream.Target), the retry rule
// (Queue.Schedule) and the resolvers ("IP:PORT", filled from
// /etc/resolv.conf when a section names none).
package config

import (
	"bytes"
	_ "embed" // default.toml
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"mxgate/retry"
)

// Config is the whole effective configuration. Every timeout and limit has a
// default filled in by Load/Default, so callers never see a zero value that
// means "unset".
type Config struct {
	// File is the path the config was loaded from; "" for the embedded default.
	File string `toml:"-"`
	// Warnings are what the file says that works but was probably not
	// meant, ordered by line; nil when there are none.
	Warnings []Warning `toml:"-"`
	// written is how each size and duration the file sets was written,
	// when that differs from the value's natural form, so String prints
	// "50MB" back as "50MB".
	written map[string]writtenValue

	Hostname  string   `toml:"hostname"`   // default: os.Hostname(), "localhost" for the embedded default
	Listen    []string `toml:"listen"`     // plain SMTP (STARTTLS if TLS set); default ["127.0.0.1:2525"] when absent; [] for TLS-only, or for no SMTP at all beside [policy_server]
	ListenTLS []string `toml:"listen_tls"` // implicit TLS (port 465 case); needs [tls]; offers AUTH when [auth] is set
	// ListenSubmission are submission listeners (port 587): STARTTLS,
	// then AUTH; needs [tls] and [auth].
	ListenSubmission []string `toml:"listen_submission"`
	DataDir          string   `toml:"data_dir"` // default "var"; relative to the config file's directory (the embedded default's: the working directory)

	// User is the system user serve runs as once its listeners are bound
	// when it starts as root, and the one admin commands run as when root
	// starts them; "" keeps the starting user.
	User string `toml:"user"`
	// Group is the group serve runs as with User; default: User's primary
	// group.
	Group string `toml:"group"`
	// RunAsRoot lets serve keep running as root (User unset or "root");
	// without it serve refuses to start as root.
	RunAsRoot bool `toml:"run_as_root"`
	// UID and GID are User and Group looked up; -1 when User is not set.
	// Groups are the daemon's supplementary groups: GID and every group
	// User is a member of (ssl-cert, for keys only that group may read).
	// Not printed.
	UID    int   `toml:"-"`
	GID    int   `toml:"-"`
	Groups []int `toml:"-"`

	TLS        TLS        `toml:"tls"`
	SMTP       SMTP       `toml:"smtp"`
	Relay      Relay      `toml:"relay"`
	RBL        RBL        `toml:"rbl"`
	HostLookup HostLookup `toml:"host_lookup"`
	Callout    Callout    `toml:"callout"`
	Spamd      Spamd      `toml:"spamd"`
	Clamd      Clamd      `toml:"clamd"`
	MsgAuth    MsgAuth    `toml:"msgauth"`
	Milters    []Milter   `toml:"milter"`
	Downstream Downstream `toml:"downstream"`
	// Routes are the other stores, chosen by recipient domain
	// ([[route]]); a relay domain in none of them goes to Downstream.
	Routes          []Downstream    `toml:"route"`
	Outbound        Outbound        `toml:"outbound"`
	RecipientVerify RecipientVerify `toml:"recipient_verify"`
	// RateLimits are the [[ratelimit]] tables, all checked.
	RateLimits []RateLimit `toml:"ratelimit"`
	Greylist   Greylist    `toml:"greylist"`
	Auth       Auth        `toml:"auth"`
	Queue      Queue       `toml:"queue"`
	Spool      Spool       `toml:"spool"`
	State      State       `toml:"state"`
	Tracking   Tracking    `toml:"tracking"`
	Log        Log         `toml:"log"`
	Admin      Admin       `toml:"admin"`
	Digest     Digest      `toml:"digest"`
	// PolicyServer is Postfix's policy delegation ([policy_server]).
	PolicyServer PolicyServer `toml:"policy_server"`
}

// TLS holds the server certificate; STARTTLS is offered only when both are set.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// Certificates are more certificates, each served to the clients
	// that ask (SNI) for a name it holds; Cert and Key stay the default.
	Certificates []TLSCertificate `toml:"certificate"`
}

// TLSCertificate is one [[tls.certificate]]: a certificate chain and its key.
type TLSCertificate struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// SMTP holds the limits of the SMTP server.
type SMTP struct {
	MaxMessageSize      Size     `toml:"max_message_size"`       // default 50 MiB
	MaxRecipients       int      `toml:"max_recipients"`         // default 100
	MaxConnections      int      `toml:"max_connections"`        // default 1000
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // default 20
	CommandTimeout      Duration `toml:"command_timeout"`        // default 5m (Exim smtp_receive_timeout)
	DataTimeout         Duration `toml:"data_timeout"`           // idle time between reads in DATA; default 5m
	MaxErrors           int      `toml:"max_errors"`             // errors before 421 and disconnect; default 10
	ShutdownTimeout     Duration `toml:"shutdown_timeout"`       // drain deadline on SIGTERM; default 30s
	MaxLineLength       int      `toml:"max_line_length"`        // default 10000 (RFC 5321 says 1000; real mail is longer)
	BareNewline         string   `toml:"bare_newline"`           // "reject" (default) | "normalize"
}

// Relay is the relay policy: who may send where.
type Relay struct {
	Domains         []string       `toml:"domains"`          // required unless trusted_networks is set; lower-cased, no trailing dot
	TrustedNetworks []netip.Prefix `toml:"trusted_networks"` // may relay to any domain
}

// RBL is the DNS blocklist check: the lists, how their answers weigh, and
// what the total score of a session does. With no lists nothing is
// looked up.
type RBL struct {
	Lists []RBLList `toml:"list"`
	// Resolver is the recursive resolvers asked, "IP:PORT" (a bare IP
	// means port 53); default: the nameservers of /etc/resolv.conf. A
	// public resolver gets refusal codes from most lists, never listings.
	Resolver    StringList `toml:"resolver"`
	RejectScore int        `toml:"reject_score"` // total at which mail is refused with 554; default 1
	TagScore    int        `toml:"tag_score"`    // total at which X-RBL-Score is stamped; default reject_score (no stamping)
	Timeout     Duration   `toml:"timeout"`      // per lookup, retries included; default 2s
	RejectAt    string     `toml:"reject_at"`    // "rcpt" (default) | "connect": IP lists refuse the greeting
	CacheSize   int        `toml:"cache_size"`   // answers kept; default 10000
	MinTTL      Duration   `toml:"min_ttl"`      // floor of answer TTLs; default 30s
	MaxTTL      Duration   `toml:"max_ttl"`      // ceiling of answer TTLs; default 1h
}

// RBLList is one DNS list ([[rbl.list]]).
type RBLList struct {
	Zone string `toml:"zone"` // required, e.g. "zen.spamhaus.org"
	Kind string `toml:"kind"` // "ip" (default): the client's address; "sender_domain"; "helo"
	// Match is the answers that count: "127.0.0.2", a range
	// "127.0.0.4-127.0.0.11", or a bitmask "&0.0.0.4" (all its bits set,
	// as Exim's &); empty: any answer in 127.0.0.0/8.
	Match   []string `toml:"match"`
	Weight  int      `toml:"weight"`   // added to the score on a match; negative for allow-lists; default 1
	OnError string   `toml:"on_error"` // "ignore" (default): a failed lookup is not listed; "tempfail": 451
}

// StringList is a list of strings that a file may also write as one
// string, as in resolver = "127.0.0.1:53".
type StringList []string

// Downstream is a mail store that accepted mail goes to: [downstream], the
// default route, and each [[route]], which adds Name and Domains.
type Downstream struct {
	Name    string   `toml:"name,omitempty"`    // [[route]] only: logged as R=; default: its first domain
	Domains []string `toml:"domains,omitempty"` // [[route]] only, required: the recipient domains it takes; lower-cased
	URL     string   `toml:"url"`               // smtp://h:p, lmtp://h:p, lmtp+unix:///path, maildir:///path (required)
	// Target is URL parsed and checked, the one parse of it: what
	// deliver.New takes, as deliver.Target(cfg.Downstream.Target).
	Target         Target   `toml:"-"`
	ConnectTimeout Duration `toml:"connect_timeout"` // default 30s
	CommandTimeout Duration `toml:"command_timeout"` // default 5m
	DataTimeout    Duration `toml:"data_timeout"`    // per write while sending the body, and for the final reply; default 10m
	// IdleTimeout keeps an SMTP or LMTP connection to the store open this
	// long after a message, for the next one (RSET, then MAIL); default
	// 10s.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxConnections bounds the connections open at once to the store, in
	// use and idle; a delivery beyond it waits; default 20 (as many as
	// queue.max_parallel's default).
	MaxConnections int `toml:"max_connections"`
	// MaxMessagesPerConnection is how many messages one connection
	// carries before it is closed (Exim's connection_max_messages); 1 =
	// a connection per message; default 100.
	MaxMessagesPerConnection int    `toml:"max_messages_per_connection"`
	StartTLS                 string `toml:"starttls"`   // "opportunistic" (default) | "none" | "required"
	TLSVerify                bool   `toml:"tls_verify"` // verify the downstream certificate; default false (opportunistic TLS)
	// VerifyRecipients is where a recipient is looked up at RCPT:
	// "none" (default), "callout" (the store itself, by RCPT TO),
	// "file:PATH" (a recipients list) or "dovecot:PATH" (Dovecot's
	// auth-userdb socket).
	VerifyRecipients string `toml:"verify_recipients"`
	// Verify is VerifyRecipients taken apart. Not printed.
	Verify Verify `toml:"-"`
	// OverQuota is what the store's over-quota answers (552 5.2.2,
	// 452 4.2.2) do: "defer" (default), "bounce" or "discard".
	OverQuota string `toml:"over_quota"`
	// RecipientDelimiter separates a sub-address: user+tag@ is looked
	// up and (Maildir) delivered as user@; default "+", "" for none.
	RecipientDelimiter string `toml:"recipient_delimiter"`
	// LowercaseLocal looks up and delivers local parts lower-cased, as
	// Dovecot's default auth_username_format %Lu does; default true.
	LowercaseLocal bool `toml:"lowercase_local"`
	// MaildirLayout is where, under the maildir:// path, a recipient's
	// Maildir is: a template of {domain}, {local} and {user} (the owner
	// of the domain in MaildirUsers); an absolute template ignores the
	// URL path. Default "{domain}/{local}".
	MaildirLayout string `toml:"maildir_layout,omitempty"`
	// MaildirUsers is a file of "domain: user" lines (cPanel's
	// /etc/userdomains), required when the layout uses {user}.
	MaildirUsers string `toml:"maildir_users,omitempty"`
	// MaildirOwner is "user:group" owning the directories and files
	// written, or "{user}" (OwnerUser) for the layout's {user} and their
	// primary group, per recipient; default: the process's own.
	MaildirOwner string `toml:"maildir_owner,omitempty"`
	// MaildirUID and MaildirGID are a "user:group" MaildirOwner looked
	// up; -1 when it is not set or is "{user}". Not printed.
	MaildirUID int `toml:"-"`
	MaildirGID int `toml:"-"`
	// MaildirOwnerUser: MaildirOwner is "{user}". Not printed.
	MaildirOwnerUser bool `toml:"-"`
	// MaildirMode is the mode of the directories created, as octal;
	// default "0700" (files get it without the x bits).
	MaildirMode string `toml:"maildir_mode,omitempty"`
}

// OwnerUser is the maildir_owner that gives each Maildir to the system
// user its layout's {user} names (cPanel: the account owning the domain).
const OwnerUser = "{user}"

// Verify is a recipient-verification source taken apart.
type Verify struct {
	Source string // "none", "callout", "file" or "dovecot"
	Path   string // file: the recipients list; dovecot: the auth-userdb socket
}

// Outbound is how mail for domains that are not relay domains leaves
// (relayed for trusted clients, bounces, delay warnings).
type Outbound struct {
	// Mode: "mx" (default, direct delivery to the domain's MX hosts),
	// "smarthost" (everything through one relay) or "none" (refused
	// at RCPT; a bounce for such an address is frozen).
	Mode string `toml:"mode"`
	// Smarthost is smtp://HOST:PORT (STARTTLS) or smtps://HOST:PORT
	// (implicit TLS); required in smarthost mode.
	Smarthost       string `toml:"smarthost"`
	SmarthostTarget Target `toml:"-"`
	// AuthUser and AuthPasswordFile authenticate to the smarthost
	// (PLAIN, over TLS only); the file holds the password on its first
	// line and is read at load, so the password is never printed.
	AuthUser         string `toml:"auth_user"`
	AuthPasswordFile string `toml:"auth_password_file"`
	AuthPassword     string `toml:"-"`
	// StartTLS: "opportunistic" (mx default), "required" (smarthost
	// default) or "none".
	StartTLS string `toml:"starttls"`
	// Resolver is the resolvers asked for MX, address, TLSA and MTA-STS
	// records, "IP:PORT"; default: the nameservers of /etc/resolv.conf.
	Resolver StringList `toml:"resolver"`
	Port     int        `toml:"port"`    // port of the MX hosts; default 25
	MTASTS   string     `toml:"mta_sts"` // "off" (default), "testing" or "enforce"
	// MTASTSPort is the HTTPS port of mta-sts.DOMAIN; default 443.
	MTASTSPort int `toml:"mta_sts_port"`
	// CAFile is a PEM bundle of the CAs trusted for MTA-STS policy hosts
	// and MX certificates; default: the system's.
	CAFile       string `toml:"ca_file"`
	MaxPerDomain int    `toml:"max_per_domain"` // connections at once to one destination domain; default 10
	// IdleTimeout keeps a connection to an MX host or the smarthost open
	// this long after a message, for the next one to that host, whatever
	// its domain; default 2s (Postfix's smtp_connection_cache_time_limit).
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxMessagesPerConnection is how many messages one connection
	// carries before it is closed; 1 = a connection per message; default
	// 100.
	MaxMessagesPerConnection int      `toml:"max_messages_per_connection"`
	ConnectTimeout           Duration `toml:"connect_timeout"` // default 30s
	CommandTimeout           Duration `toml:"command_timeout"` // default 5m
	DataTimeout              Duration `toml:"data_timeout"`    // default 10m
}

// RecipientVerify tunes recipient verification at RCPT, whatever the
// source a route names.
type RecipientVerify struct {
	// DeferOK accepts a recipient whose lookup got no answer (store down
	// or 4xx) instead of 451 4.4.3.
	DeferOK     bool     `toml:"defer_ok"`
	Timeout     Duration `toml:"timeout"`      // per lookup, connect included; default 10s
	PositiveTTL Duration `toml:"positive_ttl"` // how long "user exists" is cached; default 1h
	NegativeTTL Duration `toml:"negative_ttl"` // how long "user unknown" is cached; default 10m
	CacheSize   int      `toml:"cache_size"`   // addresses kept; default 100000
	// MaxConnections is the lookups at once to one store; default 10.
	MaxConnections int `toml:"max_connections"`
	// IdleTimeout closes a connection to a store (callout, dovecot)
	// left unused this long; default 30s.
	IdleTimeout Duration `toml:"idle_timeout"`
}

// Target is a downstream URL taken apart. Its fields are deliver.Target's,
// in the same order, so that one converts to the other; config does not
// import deliver.
type Target struct {
	Scheme string // "smtp", "lmtp", "lmtp+unix" or "maildir"; "smtps" for outbound.smarthost
	Host   string // smtp, lmtp: a host name or an IP address, without brackets
	Port   int    // smtp, lmtp: 1-65535
	Path   string // lmtp+unix, maildir: absolute and clean
}

// Queue governs delivery and retries.
type Queue struct {
	Retry string `toml:"retry"` // Exim retry rule; default "F,2h,15m; G,16h,1h,1.5; F,4d,6h"
	// Schedule is Retry parsed and checked, the one parse of it: what
	// queue.Options.Schedule takes. Not printed.
	Schedule    *retry.Schedule `toml:"-"`
	RunInterval Duration        `toml:"run_interval"` // how often the queue runner looks for due messages; default 1m
	MaxParallel int             `toml:"max_parallel"` // concurrent deliveries; default 20
	// ReadyMax bounds the ready queue: at most this many message IDs wait
	// in memory for a delivery slot; past it the spool is the queue, and
	// delivery rescans it. Default 4096, at most 1048576.
	ReadyMax int `toml:"ready_max"`
	// DelayWarning is Exim's delay_warning: a sender whose message is
	// still undelivered this long after it arrived gets one warning;
	// default 24h, "0" sends none.
	DelayWarning Duration `toml:"delay_warning"`
	// TimeoutFrozenAfter is Exim's timeout_frozen_after: a frozen message
	// this long after it arrived is bounced (a bounce: discarded) and
	// removed; default 0, which keeps frozen messages until an admin acts.
	TimeoutFrozenAfter Duration `toml:"timeout_frozen_after"`
}

// Spool is how the spool under data_dir makes a message durable before
// its 250.
type Spool struct {
	// Sync is how a commit batch's data reaches the disk: "fdatasync"
	// (default: each file of the batch, nothing else) or "syncfs" (the
	// spool's whole filesystem, another program's dirty pages too). The
	// values are spool.SyncPolicy's.
	Sync string `toml:"sync"`
	// MinFreeSpace is Exim's check_spool_space: MAIL is answered 452
	// while the spool's filesystem has less than this free beside the
	// message's declared SIZE; default 100 MiB, "0" disables the check.
	MinFreeSpace Size `toml:"min_free_space"`
	// MinFreeInodes is Exim's check_spool_inodes, the same for free
	// inodes; default 1000, 0 disables it.
	MinFreeInodes int `toml:"min_free_inodes"`
}

// Log selects log files and format.
type Log struct {
	Dir    string `toml:"dir"`    // default DataDir/log
	Format string `toml:"format"` // "exim" (default) | "json"
}

// defaultTOML is the configuration `mxgate serve` runs without a file. It
// goes through Parse like any file, so it is checked by the same rules; only
// the Maildir location depends on where mxgate is started.
//
//go:embed default.toml
var defaultTOML []byte

// maildirPlaceholder is replaced, quotes included, by the downstream URL.
const maildirPlaceholder = `"@MAILDIR_URL@"`

// Default returns the embedded default configuration: listen on
// 127.0.0.1:2525, accept mail for localhost and from loopback, deliver into
// the Maildir ./var/maildir (made absolute from the working directory now).
// It panics when the working directory cannot be determined, since then no
// relative path of the default works either (and on a broken embedded file,
// which the tests rule out).
func Default() *Config {
	wd, err := os.Getwd()
	if err != nil {
		panic(fmt.Sprintf("config: the default configuration needs the working directory: %v", err))
	}
	u := url.URL{Scheme: "maildir", Path: filepath.Join(wd, "var", "maildir")}
	text := bytes.Replace(defaultTOML, []byte(maildirPlaceholder), []byte(quote(u.String())), 1)
	c, err := Parse("default.toml", text)
	if err != nil {
		// A broken embedded file is a build defect; the tests parse it.
		panic(fmt.Sprintf("config: embedded %v", err))
	}
	c.File = ""
	return c
}

// Load reads and checks the config file at path. The error names every
// problem found as "path:line: ...", ordered by line. Relative paths in
// the file (and the default data_dir) are relative to the file's
// directory, so the config means the same whatever the working directory.
func Load(path string) (*Config, error) {
	return load(path, true)
}

// LoadClient is Load for a client of the daemon that any local user runs
// (sendmail, through the submission socket): the file is checked as Load
// checks it, but the files it names are not read (TLS certificates and
// keys, DKIM keys, outbound.auth_password_file, outbound.ca_file), as
// they may be the daemon's alone and the client uses none of them.
// Outbound.AuthPassword stays empty: such a Config must not serve or
// deliver.
func LoadClient(path string) (*Config, error) {
	return load(path, false)
}

func load(path string, readFiles bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return parse(path, filepath.Dir(abs), data, readFiles)
}

// Parse checks config text and fills the defaults; name is the file name
// used in errors and stored in Config.File. Problems are reported in stages
// (TOML syntax, then keys and types, then values and required keys), so a
// later stage never reports what an earlier one already explains. Relative
// paths stay as written: relative to the working directory.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, "", data, true)
}

// parse is Parse with relative paths made absolute from base ("" leaves
// them relative), reading the files the config names unless !readFiles.
func parse(name, base string, data []byte, readFiles bool) (*Config, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(name, err)
	}
	pos, err := indexDocument(data)
	if err != nil {
		// go-toml accepted the document, so its own parser cannot fail on it;
		// still never hand back a config whose lines are unknown.
		return nil, syntaxError(name, err)
	}
	d := &decoder{file: name, base: base, pos: pos, skipFiles: !readFiles}
	c := &Config{File: name}
	d.table(nil, doc, reflect.ValueOf(c).Elem())
	if err := d.err(); err != nil {
		return nil, err
	}
	d.check(c)
	if err := d.err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(d.warnings, func(a, b Warning) int { return a.Line - b.Line })
	c.Warnings = d.warnings
	c.written = d.written
	c.pruneWritten()
	return c, nil
}

// tomlError drops go-toml's "toml: " prefix; the file:line in front already
// says where the message comes from.
type tomlError struct{ err error }

func (e tomlError) Error() string { return strings.TrimPrefix(e.err.Error(), "toml: ") }
func (e tomlError) Unwrap() error { return e.err }

func syntaxError(name string, err error) error {
	line := 0
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ = de.Position()
	}
	return &lineError{file: name, line: line, err: fmt.Errorf("invalid TOML: %w", tomlError{err})}
}

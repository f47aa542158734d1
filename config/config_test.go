package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"mxgate/retry"
)

const testdataDir = "../testdata/config/"

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string // lines of the error, each after "FILE"
	}{
		{"bad-syntax.toml", []string{
			`:4: invalid TOML: array is incomplete`,
		}},
		{"bad-duplicate.toml", []string{
			`:8: invalid TOML: key url is already defined`,
		}},
		{"bad-unknown-key.toml", []string{
			`:4: unknown key "relay.domian" (did you mean relay.domains?)`,
		}},
		{"bad-unknown-section.toml", []string{
			`:9: unknown key "spamassassin"`,
		}},
		{"bad-type.toml", []string{
			`:2: key "listen": expected an array, got string "127.0.0.1:25"`,
			`:5: key "smtp.max_recipients": expected an integer, got string "100"`,
			`:6: key "smtp.max_message_size": expected a size (bytes, or a string such as "50M"), got float 1.5`,
			`:7: key "smtp.command_timeout": expected a duration string such as "30s" or "5m", got integer 300`,
			`:8: key "smtp.bare_newline": expected a string, got boolean true`,
			`:11: key "relay.domains": expected a string, got integer 7`,
			`:15: key "downstream.tls_verify": expected a boolean, got string "yes"`,
		}},
		{"bad-cidr.toml", []string{
			`:7: key "relay.trusted_networks": invalid CIDR "10.0.0/33"`,
			`:9: key "relay.trusted_networks": invalid CIDR "fe80::1%eth0"`,
		}},
		{"bad-state.toml", []string{
			`:10: key "state.url": invalid url "memcached://127.0.0.1:11211": want "" (embedded), redis://, rediss:// or unix://`,
		}},
		{"bad-url.toml", []string{
			`:7: key "downstream.url": unsupported URL "http://127.0.0.1:2600" (want smtp://HOST:PORT, lmtp://HOST:PORT, lmtp+unix:///PATH or maildir:///PATH)`,
		}},
		{"bad-duration.toml", []string{
			`:4: key "smtp.command_timeout": invalid duration "5 minutes": unknown unit " minutes" (want e.g. "30s", "5m", "1h30m", "4d", "1w")`,
		}},
		{"bad-size.toml", []string{
			`:4: key "smtp.max_message_size": invalid size "50 megabytes": unknown unit " megabytes" (want e.g. 52428800, "500K", "50M", "50MiB", "1G")`,
		}},
		{"bad-enum.toml", []string{
			`:4: key "smtp.bare_newline": invalid value "fix" (want "reject" or "normalize")`,
			`:11: key "downstream.starttls": invalid value "always" (want "opportunistic", "none" or "required")`,
			`:14: key "log.format": invalid value "syslog" (want "exim" or "json")`,
		}},
		{"bad-negative.toml", []string{
			`:4: key "smtp.max_recipients": must not be negative, got -1`,
			`:5: key "smtp.max_message_size": must not be negative, got -5`,
			`:6: key "smtp.data_timeout": must not be negative, got "-5m"`,
			`:13: key "downstream.idle_timeout": must not be negative, got "-1s"`,
			`:14: key "downstream.max_connections": must not be negative, got -2`,
			`:15: key "downstream.max_messages_per_connection": must not be negative, got -3`,
			`:18: key "queue.max_parallel": must not be negative, got -4`,
			`:19: key "queue.ready_max": must not be negative, got -1`,
		}},
		{"bad-ready-max.toml", []string{
			`:10: key "queue.ready_max": must be at most 1048576, got 2000000`,
		}},
		{"bad-tls.toml", []string{
			`:2: key "listen_tls": needs tls.cert and tls.key`,
			`:5: key "tls.cert": is set but tls.key is not`,
		}},
		{"bad-listen.toml", []string{
			`:3: key "listen": invalid listen address "127.0.0.1" (want HOST:PORT, e.g. "127.0.0.1:25" or "[::1]:25")`,
			`:4: key "listen": invalid port "smtp" in listen address "127.0.0.1:smtp"`,
			`:6: key "listen": invalid host "bad_host" in listen address "bad_host:25"`,
			`:8: key "listen_tls": address "127.0.0.1:2525" is listed twice`,
		}},
		{"bad-no-listen.toml", []string{
			`:2: key "listen": no listen address: listen and listen_tls are both empty (and no policy_server.listen)`,
		}},
		{"bad-domain.toml", []string{
			`:5: key "relay.domains": invalid domain name "example.test.": remove the trailing dot`,
			`:6: key "relay.domains": invalid domain name "exa mple.test"`,
			`:7: key "relay.domains": invalid domain name "-example.test"`,
		}},
		{"bad-hostname.toml", []string{
			`:1: key "hostname": invalid host name "mx_1.example.test"`,
		}},
		{"bad-missing-url.toml", []string{
			`:6: missing required key "downstream.url"`,
		}},
		{"bad-missing-downstream.toml", []string{
			`: missing required key "downstream.url"`,
		}},
		{"bad-rbl.toml", []string{
			`:7: key "rbl.list[0].weight": must not be 0: the list would count for nothing (negative for an allow-list)`,
			`:9: missing required key "rbl.list[1].zone"`,
			`:10: key "rbl.list[1].kind": invalid value "asn" (want "ip", "sender_domain" or "helo")`,
			`:11: key "rbl.list[1].on_error": invalid value "defer" (want "ignore" or "tempfail")`,
			`:14: key "rbl.list[2].zone": invalid zone "dbl.example.test.": remove the trailing dot`,
			`:17: key "rbl.list[2].match": invalid answer "127.0.0.x" (` + matchHint + `)`,
			`:18: key "rbl.list[2].match": invalid answer "192.0.2.1" (` + matchHint + `)`,
			`:19: key "rbl.list[2].match": invalid range "127.0.0.9-127.0.0.4" (` + matchHint + `)`,
			`:20: key "rbl.list[2].match": invalid bitmask "&0.0.0.0" (` + matchHint + `)`,
			`:24: key "rbl.resolver": invalid resolver "dns.example.test:53" (want IP:PORT such as "127.0.0.1:53" or "[::1]:53"; a bare IP means port 53)`,
			`:25: key "rbl.reject_score": must be at least 1, got 0 (a lower score refuses clients that no list names)`,
			`:27: key "rbl.reject_at": invalid value "helo" (want "rcpt" or "connect")`,
			`:28: key "rbl.min_ttl": "2h" is above rbl.max_ttl "1h"`,
		}},
		{"bad-missing-relay.toml", []string{
			`:3: missing required key "relay.domains" or "relay.trusted_networks"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := testdataDir + tt.file
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %v, want an error", path, c)
			}
			want := path + strings.Join(tt.want, "\n"+path)
			if got := err.Error(); got != want {
				t.Errorf("Load(%s) error:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

const matchHint = `want an address in 127.0.0.0/8 such as "127.0.0.2", a range "127.0.0.4-127.0.0.11" or a bitmask "&0.0.0.4"`

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.toml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(%s) error = %v, want not-exist", path, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestLoadGood(t *testing.T) {
	path := testdataDir + "good.toml"
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:             path,
		Hostname:         "MX1.example.test",
		Listen:           []string{"127.0.0.1:2525", "[::1]:2525"},
		ListenTLS:        []string{"127.0.0.1:4650"},
		ListenSubmission: []string{"127.0.0.1:2587"},
		DataDir:          "/var/spool/mxgate",
		User:             "root", Group: "root", RunAsRoot: true, UID: 0, GID: 0, Groups: []int{0},
		TLS: TLS{Cert: absTestdata(t, "cert.pem"), Key: absTestdata(t, "key.pem"),
			Certificates: []TLSCertificate{{Cert: absTestdata(t, "cert.pem"), Key: absTestdata(t, "key.pem")}}},
		// As written where that is not how String would print the value.
		written: map[string]writtenValue{
			"spamd\x00max_size":             {"1M", 1 << 20},
			"milter\x00[0]\x00eom_timeout":  {"90s", int64(90 * time.Second)},
			"queue\x00timeout_frozen_after": {"1w", int64(7 * 24 * time.Hour)},
		},
		SMTP: SMTP{
			MaxMessageSize:      25 << 20,
			MaxRecipients:       50,
			MaxConnections:      200,
			MaxConnectionsPerIP: 5,
			CommandTimeout:      Duration(2 * time.Minute),
			DataTimeout:         Duration(10 * time.Minute),
			MaxErrors:           3,
			ShutdownTimeout:     Duration(90 * time.Second),
			MaxLineLength:       2000,
			BareNewline:         "normalize",
		},
		Relay: Relay{
			Domains: []string{"example.test", "example.org"},
			TrustedNetworks: []netip.Prefix{
				netip.MustParsePrefix("192.0.2.0/24"),
				netip.MustParsePrefix("198.51.100.7/32"),
				netip.MustParsePrefix("2001:db8::/32"),
				netip.MustParsePrefix("10.0.0.0/8"),
			},
		},
		RBL: RBL{
			Lists: []RBLList{
				{Zone: "zen.example.test", Kind: "ip", Match: []string{"127.0.0.2", "127.0.0.4-127.0.0.11"}, Weight: 3, OnError: "tempfail"},
				{Zone: "wl.example.test", Kind: "ip", Match: []string{"&0.0.0.2"}, Weight: -2, OnError: "ignore"},
				{Zone: "dbl.example.test", Kind: "sender_domain", Weight: 1, OnError: "ignore"},
				{Zone: "helo.example.test", Kind: "helo", Weight: 1, OnError: "ignore"},
			},
			Resolver:    StringList{"127.0.0.1:5353", "[::1]:53"},
			RejectScore: 4,
			TagScore:    2,
			Timeout:     Duration(500 * time.Millisecond),
			RejectAt:    "connect",
			CacheSize:   500,
			MinTTL:      Duration(time.Minute),
			MaxTTL:      Duration(2 * time.Hour),
		},
		HostLookup: HostLookup{Resolver: StringList{"127.0.0.1:5356"}, Timeout: Duration(3 * time.Second), CacheSize: 2000,
			MinTTL: Duration(10 * time.Second), MaxTTL: Duration(30 * time.Minute)},
		Callout: Callout{
			Enabled:            true,
			Port:               2525,
			Resolver:           StringList{"127.0.0.1:5354"},
			Options:            []string{"random", "postmaster", "defer_ok", "use_postmaster"},
			Timeout:            Duration(5 * time.Second),
			Deadline:           Duration(20 * time.Second),
			ExemptDomains:      []string{"partner.example.test", "example.net"},
			PositiveTTL:        Duration(12 * time.Hour),
			NegativeTTL:        Duration(30 * time.Minute),
			CacheSize:          5000,
			PerHostConcurrency: 2,
			PerHostRate:        10,
		},
		Spamd: Spamd{
			Address:         StringList{"127.0.0.1:7830", "unix:/run/spamd.sock"},
			User:            "mailscan",
			MaxSize:         1 << 20,
			TagScore:        score(4),
			QuarantineScore: score(8.5),
			RejectScore:     12.5,
			Report:          true,
			Timeout:         Duration(20 * time.Second),
			OnError:         "accept",
		},
		Clamd: Clamd{Address: StringList{"unix:/run/clamav/clamd.ctl"}, OnVirus: "quarantine", OnError: "accept",
			Timeout: Duration(time.Minute), StampClean: true},
		MsgAuth: MsgAuth{Enabled: true, Resolver: StringList{"127.0.0.1:5355", "[::1]:53"}, SPFFail: "reject", DMARCReject: "stamp",
			Timeout: Duration(5 * time.Second), DKIMSign: []DKIMSign{
				{Domain: "example.test", Selector: "mx2026", KeyFile: absTestdata(t, "dkim.pem")},
				{Domain: "example.org", Selector: "mx2026", KeyFile: absTestdata(t, "dkim.pem")},
			}},
		Milters: []Milter{
			{Address: "inet:127.0.0.1:11332", Name: "rspamd", OnError: "accept", ConnectTimeout: Duration(3 * time.Second),
				CommandTimeout: Duration(20 * time.Second), EOMTimeout: Duration(90 * time.Second)},
			{Address: "unix:/run/opendkim/opendkim.sock", Name: "unix:/run/opendkim/opendkim.sock", OnError: "tempfail",
				ConnectTimeout: Duration(10 * time.Second), CommandTimeout: Duration(30 * time.Second), EOMTimeout: Duration(120 * time.Second)},
		},
		Downstream: Downstream{
			URL:            "lmtp://127.0.0.1:24",
			Target:         Target{Scheme: "lmtp", Host: "127.0.0.1", Port: 24},
			ConnectTimeout: Duration(10 * time.Second),
			CommandTimeout: Duration(time.Minute),
			DataTimeout:    Duration(24 * time.Hour),
			IdleTimeout:    Duration(time.Minute), MaxConnections: 4, MaxMessagesPerConnection: 500,
			StartTLS:  "required",
			TLSVerify: true,

			VerifyRecipients: "callout", Verify: Verify{Source: "callout"},
			OverQuota: "discard", RecipientDelimiter: "+-", LowercaseLocal: true,
			MaildirUID: -1, MaildirGID: -1,
		},
		Routes: []Downstream{{
			Name: "other", Domains: []string{"other.example.test", "third.example.test"},
			URL:            "smtp://10.0.0.5:25",
			Target:         Target{Scheme: "smtp", Host: "10.0.0.5", Port: 25},
			ConnectTimeout: Duration(30 * time.Second), CommandTimeout: Duration(5 * time.Minute), DataTimeout: Duration(10 * time.Minute),
			IdleTimeout: Duration(10 * time.Second), MaxConnections: 20, MaxMessagesPerConnection: 100,
			StartTLS:         "opportunistic",
			VerifyRecipients: "dovecot:/run/dovecot/auth-userdb", Verify: Verify{Source: "dovecot", Path: "/run/dovecot/auth-userdb"},
			OverQuota: "bounce", MaildirUID: -1, MaildirGID: -1,
		}, {
			Name: "hosted.example.test", Domains: []string{"hosted.example.test"},
			URL:            "maildir:///var/mail/vhosts",
			Target:         Target{Scheme: "maildir", Path: "/var/mail/vhosts"},
			ConnectTimeout: Duration(30 * time.Second), CommandTimeout: Duration(5 * time.Minute), DataTimeout: Duration(10 * time.Minute),
			IdleTimeout: Duration(10 * time.Second), MaxConnections: 20, MaxMessagesPerConnection: 100,
			StartTLS:         "opportunistic",
			VerifyRecipients: "file:/etc/mxgate/recipients", Verify: Verify{Source: "file", Path: "/etc/mxgate/recipients"},
			OverQuota: "defer", RecipientDelimiter: "+", LowercaseLocal: true,
			MaildirLayout: "/home/{user}/mail/{domain}/{local}", MaildirUsers: "/etc/userdomains",
			MaildirOwner: "root:root", MaildirMode: "0750", MaildirUID: 0, MaildirGID: 0,
		}},
		Outbound: Outbound{
			Mode: "smarthost", Smarthost: "smtps://relay.example.test:465",
			SmarthostTarget: Target{Scheme: "smtps", Host: "relay.example.test", Port: 465},
			AuthUser:        "mx1@example.test", AuthPasswordFile: absTestdata(t, "smarthost.password"), AuthPassword: "s3cret",
			StartTLS: "required", Resolver: StringList{"10.0.0.53:53"}, Port: 2525,
			MTASTS: "enforce", MTASTSPort: 8443, CAFile: absTestdata(t, "ca.pem"), MaxPerDomain: 3,
			IdleTimeout: Duration(5 * time.Second), MaxMessagesPerConnection: 1,
			ConnectTimeout: Duration(20 * time.Second), CommandTimeout: Duration(2 * time.Minute), DataTimeout: Duration(5 * time.Minute),
		},
		RecipientVerify: RecipientVerify{DeferOK: true, Timeout: Duration(5 * time.Second), PositiveTTL: Duration(2 * time.Hour),
			NegativeTTL: Duration(time.Minute), CacheSize: 5000, MaxConnections: 4, IdleTimeout: Duration(30 * time.Second)},
		Queue: Queue{Retry: "F,1h,10m; F,2d,1h", Schedule: schedule(t, "F,1h,10m; F,2d,1h"), RunInterval: Duration(30 * time.Second), MaxParallel: 4, ReadyMax: 1000,
			DelayWarning: Duration(4 * time.Hour), TimeoutFrozenAfter: Duration(7 * 24 * time.Hour)},
		RateLimits: []RateLimit{{Name: "per-domain", Key: "sender_domain", Rate: "500/1h", Per: "mail", Mode: "leaky", Action: "hold", OnError: "accept",
			Count: 500, Period: time.Hour, Override: []RateOverride{{Match: "bulk.example.test", Rate: "5000/1h", Count: 5000, Period: time.Hour}}}},
		Greylist: Greylist{Enabled: true, Delay: Duration(5 * time.Minute), RetryWindow: Duration(48 * time.Hour), Expire: Duration(35 * 24 * time.Hour), AutoAllow: 5, OnError: "accept"},
		Auth: Auth{Backend: "passwd-file:" + absTestdata(t, "passwd"), BackendKind: "passwd-file", BackendPath: absTestdata(t, "passwd"),
			SenderPolicy: "login", SenderMap: absTestdata(t, "sender-logins"),
			SenderLogins: map[string][]string{"alice@example.test": {"sales@example.test", "@example.org"}, "bob@example.test": {"bob@lists.example.test"}},
			Timeout:      Duration(3 * time.Second), MaxFailures: 3,
			FailureWindow: Duration(10 * time.Minute), BlockTime: Duration(time.Hour)},
		Spool:    Spool{Sync: "syncfs", MinFreeInodes: 500},
		State:    State{URL: "redis://:secret@127.0.0.1:6379/2", Timeout: Duration(250 * time.Millisecond), PoolSize: 4},
		Tracking: Tracking{URL: "sqlite:" + absTestdata(t, "db/tracking.db"), Retention: Duration(7 * 24 * time.Hour), Queue: 5000},
		Admin: Admin{Listen: "192.0.2.10:8443", Cert: absTestdata(t, "cert.pem"), Key: absTestdata(t, "key.pem"), Timeout: Duration(10 * time.Second),
			Users: absTestdata(t, "admins"), SessionTimeout: Duration(time.Hour)},
		Log: Log{Dir: "/var/log/mxgate", Format: "json"},
		Digest: Digest{URL: "https://mx1.example.test:8025", Schedule: "weekly", At: "06:30", AtTime: 6*time.Hour + 30*time.Minute,
			LinkLifetime: Duration(3 * 24 * time.Hour), KeyFile: "/etc/mxgate/digest.key", From: "quarantine@example.test"},
		PolicyServer: PolicyServer{Listen: "127.0.0.1:10031", DryRun: true, Timeout: Duration(5 * time.Minute), TransactionTimeout: Duration(30 * time.Minute)},
	}
	// The others are about files of this machine (/etc/userdomains), and
	// TestFileWarnings' subject.
	hostBits := Warning{File: path, Line: 40, Msg: "10.1.2.3/8 has host bits set: it means 10.0.0.0/8"}
	if len(got.Warnings) == 0 || got.Warnings[0] != hostBits {
		t.Errorf("warnings %v, want %v first", got.Warnings, hostBits)
	}
	got.Warnings = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s) =\n%s\nwant\n%s", path, got, want)
	}
}

func TestLoadDefaults(t *testing.T) {
	path := testdataDir + "minimal.toml"
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:     path,
		Hostname: "mx.example.test",
		Listen:   []string{"127.0.0.1:2525"},
		DataDir:  absTestdata(t, "var"),
		UID:      -1, GID: -1,
		SMTP: SMTP{
			MaxMessageSize:      50 << 20,
			MaxRecipients:       100,
			MaxConnections:      1000,
			MaxConnectionsPerIP: 20,
			CommandTimeout:      Duration(5 * time.Minute),
			DataTimeout:         Duration(5 * time.Minute),
			MaxErrors:           10,
			ShutdownTimeout:     Duration(30 * time.Second),
			MaxLineLength:       10000,
			BareNewline:         "reject",
		},
		Relay: Relay{Domains: []string{"example.test"}},
		RBL: RBL{Resolver: testSystemResolvers, RejectScore: 1, TagScore: 1, Timeout: Duration(2 * time.Second), RejectAt: "rcpt", CacheSize: 10000,
			MinTTL: Duration(30 * time.Second), MaxTTL: Duration(time.Hour)},
		HostLookup: HostLookup{Enabled: true, Resolver: testSystemResolvers, Timeout: Duration(5 * time.Second), CacheSize: 10000,
			MinTTL: Duration(30 * time.Second), MaxTTL: Duration(time.Hour)},
		Callout: Callout{Port: 25, Resolver: testSystemResolvers, Timeout: Duration(10 * time.Second), Deadline: Duration(30 * time.Second),
			PositiveTTL: Duration(24 * time.Hour), NegativeTTL: Duration(2 * time.Hour), CacheSize: 100000, PerHostConcurrency: 4, PerHostRate: 5},
		Spamd:   Spamd{MaxSize: 512000, RejectScore: 15, Timeout: Duration(30 * time.Second), OnError: "tempfail"},
		Clamd:   Clamd{OnVirus: "reject", OnError: "tempfail", Timeout: Duration(30 * time.Second)},
		MsgAuth: MsgAuth{Resolver: testSystemResolvers, SPFFail: "stamp", DMARCReject: "honour", Timeout: Duration(10 * time.Second)},
		Downstream: Downstream{
			URL:            "smtp://127.0.0.1:2600",
			Target:         Target{Scheme: "smtp", Host: "127.0.0.1", Port: 2600},
			ConnectTimeout: Duration(30 * time.Second),
			CommandTimeout: Duration(5 * time.Minute),
			DataTimeout:    Duration(10 * time.Minute),
			IdleTimeout:    Duration(10 * time.Second), MaxConnections: 20, MaxMessagesPerConnection: 100,
			StartTLS: "opportunistic",

			VerifyRecipients: "none", Verify: Verify{Source: "none"},
			OverQuota: "defer", RecipientDelimiter: "+", LowercaseLocal: true,
			MaildirUID: -1, MaildirGID: -1,
		},
		Outbound: Outbound{
			Mode: "mx", StartTLS: "opportunistic", Resolver: testSystemResolvers, Port: 25,
			MTASTS: "off", MTASTSPort: 443, MaxPerDomain: 10,
			IdleTimeout: Duration(2 * time.Second), MaxMessagesPerConnection: 100,
			ConnectTimeout: Duration(30 * time.Second), CommandTimeout: Duration(5 * time.Minute), DataTimeout: Duration(10 * time.Minute),
		},
		RecipientVerify: RecipientVerify{Timeout: Duration(10 * time.Second), PositiveTTL: Duration(time.Hour),
			NegativeTTL: Duration(10 * time.Minute), CacheSize: 100000, MaxConnections: 10, IdleTimeout: Duration(30 * time.Second)},
		Queue: Queue{Retry: "F,2h,15m; G,16h,1h,1.5; F,4d,6h", Schedule: schedule(t, retry.Default), RunInterval: Duration(time.Minute), MaxParallel: 20, ReadyMax: 4096,
			DelayWarning: Duration(24 * time.Hour)},
		Greylist: Greylist{Delay: Duration(5 * time.Minute), RetryWindow: Duration(48 * time.Hour), Expire: Duration(35 * 24 * time.Hour), AutoAllow: 5, OnError: "accept"},
		Auth: Auth{SenderPolicy: "login_domain", SetSenderHeader: true, Timeout: Duration(10 * time.Second),
			FailDelay: Duration(2 * time.Second), MaxFailures: 5, FailureWindow: Duration(15 * time.Minute), BlockTime: Duration(15 * time.Minute)},
		Spool:    Spool{Sync: "fdatasync", MinFreeSpace: 100 << 20, MinFreeInodes: 1000},
		State:    State{Timeout: Duration(500 * time.Millisecond), PoolSize: 10},
		Tracking: Tracking{URL: "sqlite:" + absTestdata(t, "var/tracking.db"), Retention: Duration(30 * 24 * time.Hour), Queue: 10000},
		Admin:    Admin{Timeout: Duration(30 * time.Second), SessionTimeout: Duration(8 * time.Hour)},
		Log:      Log{Dir: absTestdata(t, "var/log"), Format: "exim"},
		Digest: Digest{Schedule: "daily", At: "07:00", AtTime: 7 * time.Hour, LinkLifetime: Duration(7 * 24 * time.Hour),
			KeyFile: absTestdata(t, "var/digest.key"), From: "postmaster@mx.example.test"},
		PolicyServer: PolicyServer{Timeout: Duration(10 * time.Minute), TransactionTimeout: Duration(time.Hour)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s) =\n%s\nwant\n%s", path, got, want)
	}
}

// schedule is rule parsed, as Load keeps it in Queue.Schedule.
func schedule(t *testing.T, rule string) *retry.Schedule {
	t.Helper()
	s, err := retry.Parse(rule)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestParseValues covers the value forms that a file may spell in more than
// one way; each case is the smallest config that differs from minimal.toml.
func TestParseValues(t *testing.T) {
	const base = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\n"
	tests := []struct {
		name  string
		extra string
		check func(*Config) bool
	}{
		{"dotted keys", "downstream.url = \"maildir:///srv/mail\"\n",
			func(c *Config) bool { return c.Downstream.URL == "maildir:///srv/mail" }},
		{"inline table", "downstream = { url = \"lmtp+unix:///run/dovecot/lmtp\", starttls = \"none\" }\n",
			func(c *Config) bool {
				return c.Downstream.URL == "lmtp+unix:///run/dovecot/lmtp" && c.Downstream.StartTLS == "none"
			}},
		{"size as integer", "smtp.max_message_size = 1000\ndownstream.url = \"smtp://[::1]:25\"\n",
			func(c *Config) bool { return c.SMTP.MaxMessageSize == 1000 }},
		{"zero duration means default", "smtp.command_timeout = 0\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool { return c.SMTP.CommandTimeout == Duration(5*time.Minute) }},
		{"delay warning off", "queue.delay_warning = \"0\"\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool { return c.Queue.DelayWarning == 0 }},
		{"delay warning off as 0s", "queue.delay_warning = \"0s\"\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool { return c.Queue.DelayWarning == 0 }},
		{"delay warning and frozen timeout", "queue.delay_warning = \"1h\"\nqueue.timeout_frozen_after = \"1w\"\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool {
				return c.Queue.DelayWarning == Duration(time.Hour) && c.Queue.TimeoutFrozenAfter == Duration(7*24*time.Hour)
			}},
		{"frozen timeout off", "queue.timeout_frozen_after = \"0\"\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool {
				return c.Queue.TimeoutFrozenAfter == 0 && c.Queue.DelayWarning == Duration(24*time.Hour)
			}},
		{"duration in weeks", "queue.run_interval = \"1w\"\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool { return c.Queue.RunInterval == Duration(7*24*time.Hour) }},
		{"TLS only", "listen = []\nlisten_tls = [\":465\"]\ntls = {cert = \"" + testdataDir + "cert.pem\", key = \"" + testdataDir + "key.pem\"}\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool { return c.Listen == nil && reflect.DeepEqual(c.ListenTLS, []string{":465"}) }},
		{"log dir follows data_dir", "data_dir = \"/srv/mx\"\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool { return c.Log.Dir == "/srv/mx/log" }},
		{"resolver as one string", "rbl.resolver = \"192.0.2.53\"\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool { return reflect.DeepEqual(c.RBL.Resolver, StringList{"192.0.2.53:53"}) }},
		{"lists before [rbl]", "downstream.url = \"smtp://h:25\"\n[[rbl.list]]\nzone = \"a.test\"\n[[rbl.list]]\nzone = \"b.test\"\nweight = -1\n[rbl]\nreject_score = 2\n",
			func(c *Config) bool {
				return len(c.RBL.Lists) == 2 && c.RBL.Lists[0].Zone == "a.test" && c.RBL.Lists[1].Weight == -1 &&
					c.RBL.RejectScore == 2 && c.RBL.TagScore == 2
			}},
		{"lists as inline tables", "downstream.url = \"smtp://h:25\"\nrbl.list = [{zone = \"a.test\", kind = \"helo\"}, {zone = \"b.test\"}]\n",
			func(c *Config) bool {
				return reflect.DeepEqual(c.RBL.Lists, []RBLList{
					{Zone: "a.test", Kind: "helo", Weight: 1, OnError: "ignore"},
					{Zone: "b.test", Kind: "ip", Weight: 1, OnError: "ignore"},
				})
			}},
		{"IPv6 host", "relay.trusted_networks = [\"::1\"]\ndownstream.url = \"smtp://h:25\"\n",
			func(c *Config) bool {
				return reflect.DeepEqual(c.Relay.TrustedNetworks, []netip.Prefix{netip.MustParsePrefix("::1/128")})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(base+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config:\n%s", c)
			}
		})
	}
}

// TestParseErrorsInline covers error paths too small for a file of their own.
func TestParseErrorsInline(t *testing.T) {
	const base = "hostname = \"h\"\ndownstream.url = \"smtp://h:25\"\n"
	tests := []struct{ name, extra, want string }{
		{"blank retry", "relay.domains = [\"h\"]\nqueue.retry = \"  \"\n",
			`e.toml:4: key "queue.retry": retry rule is empty: need at least one of F,cutoff,interval / G,cutoff,start,multiplier / H,cutoff,start,multiplier`},
		{"bad retry", "relay.domains = [\"h\"]\nqueue.retry = \"F,2h\"\n",
			`e.toml:4: key "queue.retry": retry rule item 1 "F,2h": fixed needs cutoff and interval`},
		{"negative delay warning", "relay.domains = [\"h\"]\nqueue.delay_warning = \"-1h\"\n",
			`e.toml:4: key "queue.delay_warning": must not be negative, got "-1h"`},
		{"negative frozen timeout", "relay.domains = [\"h\"]\n[queue]\ntimeout_frozen_after = \"-2d\"\n",
			`e.toml:5: key "queue.timeout_frozen_after": must not be negative, got "-2d"`},
		{"frozen timeout not a duration", "relay.domains = [\"h\"]\nqueue.timeout_frozen_after = \"soon\"\n",
			`e.toml:4: key "queue.timeout_frozen_after": invalid duration "soon": expected a number (want e.g. "30s", "5m", "1h30m", "4d", "1w")`},
		{"sender map line without a colon", "relay.domains = [\"h\"]\nauth.sender_map = \"" + testdataDir + "bad-sender-logins\"\n",
			`e.toml:4: key "auth.sender_map": ` + testdataDir + `bad-sender-logins:2: want "LOGIN: ADDRESS, @DOMAIN, ...", got "alice@example.test sales@example.test"`},
		{"negative spool reserve", "relay.domains = [\"h\"]\n[spool]\nmin_free_inodes = -1\n",
			`e.toml:5: key "spool.min_free_inodes": must not be negative, got -1`},
		{"unknown sync policy", "relay.domains = [\"h\"]\n[spool]\nsync = \"fsync\"\n",
			`e.toml:5: key "spool.sync": invalid value "fsync" (want "fdatasync" or "syncfs")`},
		{"key without cert", "relay.domains = [\"h\"]\ntls.key = \"k\"\n",
			`e.toml:4: key "tls.key": is set but tls.cert is not`},
		{"SNI certificate without key", "relay.domains = [\"h\"]\ntls.cert = \"" + testdataDir + "cert.pem\"\ntls.key = \"" + testdataDir + "key.pem\"\n[[tls.certificate]]\ncert = \"" + testdataDir + "cert.pem\"\n",
			`e.toml:6: key "tls.certificate[0]": needs key`},
		{"SNI certificate without cert", "relay.domains = [\"h\"]\ntls.cert = \"" + testdataDir + "cert.pem\"\ntls.key = \"" + testdataDir + "key.pem\"\n[[tls.certificate]]\nkey = \"" + testdataDir + "key.pem\"\n",
			`e.toml:6: key "tls.certificate[0]": needs cert`},
		{"SNI certificate without default", "relay.domains = [\"h\"]\n[[tls.certificate]]\ncert = \"" + testdataDir + "cert.pem\"\nkey = \"" + testdataDir + "key.pem\"\n",
			`e.toml:4: key "tls.certificate": needs the default certificate tls.cert and tls.key`},
		{"section as scalar", "relay = 5\n",
			`e.toml:3: key "relay": expected a table, got integer 5`},
		{"array of tables", "[[relay]]\ndomains = [\"h\"]\n",
			`e.toml:3: key "relay": expected a table, got an array`},
		{"nested array", "relay.domains = [[\"h\"]]\n",
			`e.toml:3: key "relay.domains": expected a string, got an array`},
		{"date", "relay.domains = [\"h\"]\nsmtp.data_timeout = 1979-05-27\n",
			`e.toml:4: key "smtp.data_timeout": expected a duration string such as "30s" or "5m", got date/time 1979-05-27`},
		{"quoted dotted key", "\"relay.domains\" = [\"h\"]\nrelay.domains = [\"h\"]\n",
			`e.toml:3: unknown key "relay.domains" (did you mean relay.domains?)`},
		{"list entry not a table", "relay.domains = [\"h\"]\nrbl.list = [\"bl.test\"]\n",
			`e.toml:4: key "rbl.list[0]": expected a table, got string "bl.test"`},
		{"second inline list", "relay.domains = [\"h\"]\nrbl.list = [\n  {zone = \"a.test\"},\n  {zone = \"b.test\", weight = \"3\"},\n]\n",
			`e.toml:6: key "rbl.list[1].weight": expected an integer, got string "3"`},
		{"table under a list entry", "relay.domains = [\"h\"]\n[[rbl.list]]\nzone = \"a.test\"\n[[rbl.list]]\nzone = \"b.test\"\n[rbl.list.extra]\nx = 1\n",
			`e.toml:8: unknown key "rbl.list[1].extra"`},
		{"resolver not a string", "relay.domains = [\"h\"]\nrbl.resolver = 53\n",
			`e.toml:4: key "rbl.resolver": expected a string or an array of strings, got integer 53`},
		{"tag above reject", "relay.domains = [\"h\"]\n[rbl]\nreject_score = 3\ntag_score = 4\n",
			`e.toml:6: key "rbl.tag_score": 4 is above rbl.reject_score 3: no message would be stamped`},
		{"tag below 1", "relay.domains = [\"h\"]\n[rbl]\ntag_score = 0\n",
			`e.toml:5: key "rbl.tag_score": must be at least 1, got 0 (a lower score stamps clients that no list names)`},
		{"field name instead of key", "relay.domains = [\"h\"]\nFile = \"x\"\n",
			`e.toml:4: unknown key "File"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.toml", []byte(base+tt.extra))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseURLs(t *testing.T) {
	tests := []struct {
		url, err string // err "" means accepted
		target   Target // what an accepted URL is taken apart into
	}{
		{"smtp://127.0.0.1:25", "", Target{Scheme: "smtp", Host: "127.0.0.1", Port: 25}},
		{"smtp://mail.example.test:2525/", "", Target{Scheme: "smtp", Host: "mail.example.test", Port: 2525}},
		{"lmtp://[::1]:24", "", Target{Scheme: "lmtp", Host: "::1", Port: 24}},
		{"lmtp+unix:///run/dovecot/lmtp", "", Target{Scheme: "lmtp+unix", Path: "/run/dovecot/lmtp"}},
		{"maildir:///var/mail", "", Target{Scheme: "maildir", Path: "/var/mail"}},
		{"maildir:///srv/../var/mail/", "", Target{Scheme: "maildir", Path: "/var/mail"}},
		{"maildir:///srv/mail%20box", "", Target{Scheme: "maildir", Path: "/srv/mail box"}},
		{"smtp://127.0.0.1", `invalid URL "smtp://127.0.0.1": smtp:// needs HOST:PORT`, Target{}},
		{"lmtp://:24", `invalid URL "lmtp://:24": lmtp:// needs HOST:PORT`, Target{}},
		{"smtp://h:0", `invalid URL "smtp://h:0": invalid port "0"`, Target{}},
		{"smtp://h:25/x", `invalid URL "smtp://h:25/x": smtp:// takes no path`, Target{}},
		{"smtp://u:p@h:25", `invalid URL "smtp://u:p@h:25": user, query and fragment are not supported`, Target{}},
		{"maildir://var/mail", `invalid URL "maildir://var/mail": maildir:// needs an absolute path, as in maildir:///var/mail`, Target{}},
		{"maildir:var/mail", `invalid URL "maildir:var/mail": maildir:// needs an absolute path`, Target{}},
		{"smtp:h:25", `invalid URL "smtp:h:25": smtp:// needs HOST:PORT`, Target{}},
		{"smtp://bad_host:25", `invalid URL "smtp://bad_host:25": invalid host "bad_host"`, Target{}},
		{"maildir:///m?x=1", `invalid URL "maildir:///m?x=1": user, query and fragment are not supported`, Target{}},
		{"lmtp+unix://relative", `invalid URL "lmtp+unix://relative": lmtp+unix:// needs an absolute path`, Target{}},
		{"/var/mail", `unsupported URL "/var/mail"`, Target{}},
		{"smtp://h:25%", `invalid URL "smtp://h:25%"`, Target{}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			text := "hostname = \"h\"\nrelay.domains = [\"h\"]\n\n[downstream]\nurl = " + quote(tt.url) + "\n"
			c, err := Parse("u.toml", []byte(text))
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tt.err == "" && c.Downstream.Target != tt.target:
				t.Errorf("Target = %+v, want %+v", c.Downstream.Target, tt.target)
			case tt.err != "" && err == nil:
				t.Errorf("accepted, want error %q", tt.err)
			case tt.err != "" && !strings.HasPrefix(err.Error(), `u.toml:5: key "downstream.url": `+tt.err):
				t.Errorf("error = %q, want prefix %q", err, tt.err)
			}
		})
	}
}

func TestParseHostnameFromSystem(t *testing.T) {
	text := "relay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\n"
	c, err := Parse("h.toml", []byte(text))
	sys, syserr := os.Hostname()
	if syserr != nil || !validDomain(sys) {
		if err == nil || !strings.HasPrefix(err.Error(), "h.toml: hostname is not set and the system host name") {
			t.Fatalf("system host name %q (%v): error = %v, want a request to set hostname", sys, syserr, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != sys {
		t.Errorf("Hostname = %q, want the system's %q", c.Hostname, sys)
	}
}

func TestDefault(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c := Default()
	if c.File != "" {
		t.Errorf("File = %q, want empty", c.File)
	}
	if want := "maildir://" + filepath.Join(wd, "var", "maildir"); c.Downstream.URL != want {
		t.Errorf("Downstream.URL = %q, want %q", c.Downstream.URL, want)
	}
	if want := (Target{Scheme: "maildir", Path: filepath.Join(wd, "var", "maildir")}); c.Downstream.Target != want {
		t.Errorf("Downstream.Target = %+v, want %+v", c.Downstream.Target, want)
	}
	want := []struct{ name, got, want string }{
		{"Hostname", c.Hostname, "localhost"},
		{"Listen", strings.Join(c.Listen, ","), "127.0.0.1:2525"},
		{"DataDir", c.DataDir, "var"},
		{"Log.Dir", c.Log.Dir, "var/log"},
		{"Relay.Domains", strings.Join(c.Relay.Domains, ","), "localhost"},
		{"Relay.TrustedNetworks", joinPrefixes(c.Relay.TrustedNetworks), "127.0.0.0/8,::1/128"},
		{"SMTP.CommandTimeout", c.SMTP.CommandTimeout.String(), "5m"},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s = %q, want %q", w.name, w.got, w.want)
		}
	}
}

// TestDefaultPathEscaped runs Default from a directory whose name needs
// escaping in a URL and in TOML; the URL must still name that directory.
func TestDefaultPathEscaped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `we"ird %dir#`)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c := Default()
	want := "maildir://" + strings.NewReplacer(`"`, "%22", " ", "%20", "%", "%25", "#", "%23").Replace(filepath.Join(dir, "var", "maildir"))
	if c.Downstream.URL != want {
		t.Errorf("Downstream.URL = %q, want %q", c.Downstream.URL, want)
	}
	if path := filepath.Join(dir, "var", "maildir"); c.Downstream.Target.Path != path {
		t.Errorf("Downstream.Target.Path = %q, want %q", c.Downstream.Target.Path, path)
	}
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func TestStringRoundTrip(t *testing.T) {
	configs := map[string]*Config{"default": Default()}
	for _, f := range []string{"good.toml", "minimal.toml"} {
		c, err := Load(testdataDir + f)
		if err != nil {
			t.Fatal(err)
		}
		configs[f] = c
	}
	for name, c := range configs {
		t.Run(name, func(t *testing.T) {
			text := c.String()
			back, err := Parse(c.File, []byte(text))
			if err != nil {
				t.Fatalf("Parse(String()) failed: %v\n%s", err, text)
			}
			// Warnings are about the text (10.1.2.3/8 prints as 10.0.0.0/8),
			// not the configuration.
			back.Warnings = c.Warnings
			if !reflect.DeepEqual(back, c) {
				t.Errorf("Parse(String()) =\n%s\nwant\n%s", back, text)
			}
		})
	}
}

// TestStringText pins the printed form: durations as Go strings, sizes as
// integers, every key present.
func TestStringText(t *testing.T) {
	c, err := Load(testdataDir + "minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(testdataDir + "minimal.effective.toml")
	if err != nil {
		t.Fatal(err)
	}
	// The default data_dir is relative to the file's directory.
	if got := strings.ReplaceAll(c.String(), absTestdata(t, ""), "TESTDATA"); got != string(want) {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

// TestZeroLimits: a limit or timeout written as 0 takes its default, so
// the SMTP server, which reads 0 as "unlimited", never sees one.
func TestZeroLimits(t *testing.T) {
	text := `hostname = "h"
relay.domains = ["h"]
downstream.url = "smtp://h:25"

[smtp]
max_message_size       = 0
max_recipients         = 0
max_connections        = 0
max_connections_per_ip = 0
command_timeout        = "0s"
data_timeout           = "0s"
max_errors             = 0
shutdown_timeout       = "0s"
max_line_length        = 0
`
	c, err := Parse("z.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	s := c.SMTP
	for _, v := range []struct {
		key string
		val int64
	}{
		{"max_message_size", int64(s.MaxMessageSize)},
		{"max_recipients", int64(s.MaxRecipients)},
		{"max_connections", int64(s.MaxConnections)},
		{"max_connections_per_ip", int64(s.MaxConnectionsPerIP)},
		{"command_timeout", int64(s.CommandTimeout)},
		{"data_timeout", int64(s.DataTimeout)},
		{"max_errors", int64(s.MaxErrors)},
		{"shutdown_timeout", int64(s.ShutdownTimeout)},
		{"max_line_length", int64(s.MaxLineLength)},
	} {
		if v.val <= 0 {
			t.Errorf("smtp.%s = %d, want its positive default", v.key, v.val)
		}
	}
	if s.BareNewline != "reject" {
		t.Errorf("smtp.bare_newline = %q, want the default", s.BareNewline)
	}
}

// absTestdata is name in testdataDir as an absolute path: what a relative
// path in a config file there resolves to.
func absTestdata(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(testdataDir)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

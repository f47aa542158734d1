package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Spamd is the SpamAssassin check ([spamd]): every accepted message is
// scanned by spamd over SPAMC. Off while Address is empty.
type Spamd struct {
	// Address is spamd's "HOST:PORT" or "unix:/PATH"; with several, the
	// next is tried when one cannot be reached.
	Address StringList `toml:"address"`
	User    string     `toml:"user"`     // the user spamd scans as (spamc -u); default: spamd's own
	MaxSize Size       `toml:"max_size"` // bigger messages are not scanned but stamped so; default 512000, spamc's
	// TagScore is the score from which a message is marked as spam
	// (X-Spam-Flag: YES); absent: the threshold spamd answers with
	// (required_score, 5.0 out of the box), so spamd's own config rules.
	TagScore *float64 `toml:"tag_score"`
	// QuarantineScore is the score from which a message goes to the
	// quarantine instead of the mailbox; absent: never.
	QuarantineScore *float64 `toml:"quarantine_score"`
	RejectScore     float64  `toml:"reject_score"` // score from which DATA gets 550 5.7.1; default 15.0
	Report          bool     `toml:"report"`       // stamp X-Spam-Report with the rules that hit
	Timeout         Duration `toml:"timeout"`      // per message, connect included; default 30s
	OnError         string   `toml:"on_error"`     // spamd failed: "tempfail" (default, 451) or "accept" (stamped Unchecked)

	// SubjectTag is put in front of the Subject of spam (score from
	// tag_score), once, as SpamAssassin's "rewrite_header Subject"; e.g.
	// "***SPAM***". Empty (the default): the Subject is left alone.
	SubjectTag string `toml:"subject_tag"`
}

// Enabled reports whether messages are scanned by spamd.
func (s *Spamd) Enabled() bool { return len(s.Address) > 0 }

// Clamd is the ClamAV check ([clamd]): every accepted message is streamed
// to clamd (INSTREAM). Off while Address is empty.
type Clamd struct {
	Address    StringList `toml:"address"`     // as spamd.address
	OnVirus    string     `toml:"on_virus"`    // "reject" (default: 550 5.7.1 Virus found) or "quarantine"
	OnError    string     `toml:"on_error"`    // clamd failed: "tempfail" (default, 451) or "accept"
	Timeout    Duration   `toml:"timeout"`     // per message; default 30s
	StampClean bool       `toml:"stamp_clean"` // stamp X-Virus-Scanned on clean mail
}

// Enabled reports whether messages are scanned by clamd.
func (c *Clamd) Enabled() bool { return len(c.Address) > 0 }

// defaultSpamdMaxSize is spamc's default -s limit.
const defaultSpamdMaxSize = 512000

// checkFilters fills the defaults of [spamd] and [clamd] and checks their
// values. A section without address is checked all the same, so setting
// the address never reveals a broken section.
func (d *decoder) checkFilters(c *Config) {
	s := &c.Spamd
	d.scannerAddrs(keyPath{"spamd", "address"}, s.Address)
	d.size(keyPath{"spamd", "max_size"}, &s.MaxSize, defaultSpamdMaxSize)
	rejectKey := keyPath{"spamd", "reject_score"}
	if !d.pos.has(rejectKey) {
		s.RejectScore = 15
	}
	// An absent tag_score follows spamd's threshold, which is only known
	// from its answers: it cannot be compared here.
	if s.TagScore != nil && *s.TagScore > s.RejectScore {
		d.failKey(keyPath{"spamd", "tag_score"}, -1, "%s is above spamd.reject_score %s: no message would be marked as spam",
			formatScore(*s.TagScore), formatScore(s.RejectScore))
	}
	if q := s.QuarantineScore; q != nil {
		switch {
		case *q > s.RejectScore:
			d.failKey(keyPath{"spamd", "quarantine_score"}, -1, "%s is above spamd.reject_score %s: no message would be quarantined",
				formatScore(*q), formatScore(s.RejectScore))
		case s.TagScore != nil && *q < *s.TagScore:
			d.failKey(keyPath{"spamd", "quarantine_score"}, -1, "%s is below spamd.tag_score %s: mail not marked as spam would be quarantined",
				formatScore(*q), formatScore(*s.TagScore))
		}
	}
	if err := checkSubjectTag(s.SubjectTag); err != nil {
		d.failKey(keyPath{"spamd", "subject_tag"}, -1, "%w", err)
	}
	d.duration(keyPath{"spamd", "timeout"}, &s.Timeout, 30*time.Second)
	d.enum(keyPath{"spamd", "on_error"}, &s.OnError, "tempfail", "accept")

	v := &c.Clamd
	d.scannerAddrs(keyPath{"clamd", "address"}, v.Address)
	d.enum(keyPath{"clamd", "on_virus"}, &v.OnVirus, "reject", "quarantine")
	d.enum(keyPath{"clamd", "on_error"}, &v.OnError, "tempfail", "accept")
	d.duration(keyPath{"clamd", "timeout"}, &v.Timeout, 30*time.Second)
}

// maxSubjectTag bounds spamd.subject_tag: a tag, not a sentence, and the
// tagged Subject line has to stay within RFC 5322's 998 characters.
const maxSubjectTag = 100

// checkSubjectTag checks that a tag is a safe start of a Subject field: one
// line of printable ASCII (a raw UTF-8 Subject needs SMTPUTF8 all the way
// downstream), no whitespace at its ends (the tag is followed by one
// space), at most maxSubjectTag characters. "" is off.
func checkSubjectTag(tag string) error {
	if tag == "" {
		return nil
	}
	for _, r := range tag {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("invalid character %q in %q: want printable ASCII on one line", r, tag)
		}
	}
	switch {
	case strings.TrimSpace(tag) != tag:
		return fmt.Errorf("%q starts or ends with a space: the tag is followed by one space of its own", tag)
	case len(tag) > maxSubjectTag:
		return fmt.Errorf("%d characters, want at most %d", len(tag), maxSubjectTag)
	}
	return nil
}

// scannerAddrs checks the addresses of a scanner: "HOST:PORT" or
// "unix:/PATH".
func (d *decoder) scannerAddrs(key keyPath, addrs []string) {
	for i, a := range addrs {
		if err := checkScannerAddr(a); err != nil {
			d.failKey(key, i, "%w", err)
		} else if slices.Contains(addrs[:i], a) {
			d.failKey(key, i, "address %q is listed twice", a)
		}
	}
}

func checkScannerAddr(a string) error {
	const forms = `want HOST:PORT such as "127.0.0.1:783" or unix:/PATH such as "unix:/run/spamd.sock"`
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("invalid address %q: the socket path must be absolute (%s)", a, forms)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("invalid address %q (%s)", a, forms)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return fmt.Errorf("invalid port %q in address %q", port, a)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validDomain(host) {
		return fmt.Errorf("invalid host %q in address %q", host, a)
	}
	return nil
}

// formatScore writes a score as the file would, at least one decimal
// included: "15.0", "7.25".
func formatScore(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

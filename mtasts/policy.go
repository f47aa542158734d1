// Package mtasts is SMTP MTA Strict Transport Security (RFC 8461) for the
// outbound MX transport: it finds a domain's policy (the TXT record
// _mta-sts.DOMAIN, then the policy file over HTTPS from mta-sts.DOMAIN,
// verified, without redirects, size- and time-bounded), parses it, caches
// it by its id for its max_age (in memory, and in a small file when asked
// so that a restart does not forget an enforced policy), and says which MX
// hosts it allows. What a policy means for a delivery (skip a host,
// require verified TLS, or only log in testing mode) is the transport's
// decision.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode.
type Mode string

// The modes of RFC 8461 5.
const (
	Enforce Mode = "enforce" // only matching MX hosts, verified TLS
	Testing Mode = "testing" // report failures, deliver anyway
	None    Mode = "none"    // no policy
)

// maxMaxAge is the longest max_age a policy may give (RFC 8461 3.2: about
// a year).
const maxMaxAge = 31557600

// Policy is a parsed policy file.
type Policy struct {
	Mode   Mode
	MX     []string // patterns, lower case, without a final dot: "mx.example.com", "*.example.net"
	MaxAge time.Duration
}

// Parse reads a policy file (RFC 8461 3.2): "key: value" lines ending in
// LF or CRLF; version STSv1, mode and max_age once each (a repeated field
// counts the first time), mx any number of times and at least once unless
// the mode is none; unknown keys ignored. It sees bytes off the network:
// it never panics.
func Parse(b []byte) (*Policy, error) {
	var p Policy
	var version string
	seen := make(map[string]bool)
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimRight(line, " \t") == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || key == "" || !isFieldName(key) {
			return nil, fmt.Errorf("line %d: not a \"key: value\" field", n+1)
		}
		value = strings.Trim(value, " \t")
		if key != "mx" {
			if seen[key] {
				continue
			}
			seen[key] = true
		}
		switch key {
		case "version":
			version = value
		case "mode":
			p.Mode = Mode(value)
			if p.Mode != Enforce && p.Mode != Testing && p.Mode != None {
				return nil, fmt.Errorf("line %d: unknown mode %q", n+1, value)
			}
		case "max_age":
			if value == "" || len(value) > 10 || strings.Trim(value, "0123456789") != "" {
				return nil, fmt.Errorf("line %d: max_age %q is not 1 to 10 digits", n+1, value)
			}
			secs, _ := strconv.ParseInt(value, 10, 64)
			p.MaxAge = time.Duration(min(secs, maxMaxAge)) * time.Second
		case "mx":
			pat := strings.ToLower(strings.TrimSuffix(value, "."))
			if !validPattern(pat) {
				return nil, fmt.Errorf("line %d: mx %q is not a host name or *.domain pattern", n+1, value)
			}
			p.MX = append(p.MX, pat)
		}
	}
	switch {
	case version != "STSv1":
		return nil, fmt.Errorf("version %q, want STSv1", version)
	case p.Mode == "":
		return nil, errors.New("no mode")
	case !seen["max_age"]:
		return nil, errors.New("no max_age")
	case len(p.MX) == 0 && p.Mode != None:
		return nil, errors.New("no mx")
	}
	return &p, nil
}

// Match reports whether the policy allows MX host (RFC 8461 4.1): equal
// to a pattern, or one label more than a "*." pattern's domain; case and
// a final dot do not matter.
func (p *Policy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, domain, found := strings.Cut(host, ".")
			if found && label != "" && domain == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// isFieldName is RFC 8461's sts-policy-name: 1*32(ALPHA / DIGIT / "_" /
// "-" / ".").
func isFieldName(s string) bool {
	if len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validPattern: an optional "*." and a host name of at least two labels
// of letters, digits and inner hyphens.
func validPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ParseRecord reads the TXT records of _mta-sts.DOMAIN (each one's
// strings joined) and returns the policy id (RFC 8461 3.1). Records that
// do not start "v=STSv1" are not MTA-STS records; none is ErrNoRecord,
// and more than one is an error, as is a record without a valid id.
func ParseRecord(txts []string) (id string, err error) {
	var rec string
	n := 0
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			rec = t
			n++
		}
	}
	switch n {
	case 0:
		return "", ErrNoRecord
	case 1:
	default:
		return "", fmt.Errorf("%d MTA-STS TXT records, want one", n)
	}
	for i, field := range strings.Split(rec, ";") {
		field = strings.Trim(field, " \t")
		if field == "" {
			continue
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return "", fmt.Errorf("TXT record field %q is not key=value", field)
		}
		switch {
		case i == 0 && (k != "v" || v != "STSv1"):
			return "", fmt.Errorf("TXT record starts %q, want v=STSv1", field)
		case k == "id" && id == "":
			if v == "" || len(v) > 32 || strings.IndexFunc(v, func(r rune) bool { return r > 0x7f || !isAlnum(byte(r)) }) >= 0 {
				return "", fmt.Errorf("TXT record id %q is not 1 to 32 letters and digits", v)
			}
			id = v
		}
	}
	if id == "" {
		return "", errors.New("TXT record has no id")
	}
	return id, nil
}

// ErrNoRecord is a domain without an MTA-STS TXT record: it has no policy
// (unless one is cached).
var ErrNoRecord = errors.New("no MTA-STS TXT record")

// Package digest is the end users' view of the quarantine: a mail to each
// local recipient of quarantined messages (Build, Send), listing each
// message with a link to release it and one to delete it for that
// recipient alone, and the page behind the links (Handler), which shows
// what will happen and acts only on a POST. A link is a signed token
// (HMAC-SHA256 under the key of [digest] key_file) that names its action,
// message, recipient and expiry, so it needs no login and no state.
package digest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"mxgate/spool"
)

// Action is what a link does.
type Action string

// The two actions of a link.
const (
	Release Action = "release"
	Delete  Action = "delete"
)

// Token is what a link carries.
type Token struct {
	Action    Action
	ID        spool.ID
	Recipient string // the envelope recipient the link acts for, as the -H has it
	Expires   time.Time
}

// tokenVersion is the payload's first field; a new layout takes a new one.
const tokenVersion = "1"

// Errors of Verify.
var (
	// ErrInvalid: the token was not made with this key (altered, forged,
	// truncated, or the key was replaced), or names no known action.
	ErrInvalid = errors.New("digest: the link is not valid")
	// ErrExpired: a genuine token past its expiry.
	ErrExpired = errors.New("digest: the link has expired")
)

var b64 = base64.RawURLEncoding.Strict()

// Sign returns t as base64url(payload) "." base64url(HMAC-SHA256(key,
// payload)), the payload being the version, action, ID, recipient and
// expiry (Unix seconds), one per line: an address never holds a line
// break.
func Sign(key []byte, t Token) string {
	payload := strings.Join([]string{tokenVersion, string(t.Action), string(t.ID), t.Recipient, strconv.FormatInt(t.Expires.Unix(), 10)}, "\n")
	return b64.EncodeToString([]byte(payload)) + "." + b64.EncodeToString(mac(key, []byte(payload)))
}

func notBase64URL(r rune) bool {
	return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

func mac(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(payload)
	return m.Sum(nil)
}

// Verify checks s's signature with key (hmac.Equal) before it reads
// anything of the payload, then its fields, then its expiry against now.
func Verify(key []byte, s string, now time.Time) (Token, error) {
	p64, s64, ok := strings.Cut(s, ".")
	// The decoder skips CR and LF: a token is its alphabet only, so that
	// one link has one spelling.
	if !ok || strings.IndexFunc(s, notBase64URL) >= 0 {
		return Token{}, ErrInvalid
	}
	payload, err1 := b64.DecodeString(p64)
	sig, err2 := b64.DecodeString(s64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, mac(key, payload)) {
		return Token{}, ErrInvalid
	}
	f := strings.Split(string(payload), "\n")
	if len(f) != 5 || f[0] != tokenVersion {
		return Token{}, ErrInvalid
	}
	t := Token{Action: Action(f[1]), ID: spool.ID(f[2]), Recipient: f[3]}
	exp, err := strconv.ParseInt(f[4], 10, 64)
	if err != nil || (t.Action != Release && t.Action != Delete) || !spool.ValidID(f[2]) || t.Recipient == "" {
		return Token{}, ErrInvalid
	}
	t.Expires = time.Unix(exp, 0)
	if !now.Before(t.Expires) {
		return t, ErrExpired
	}
	return t, nil
}

// Link is the URL of t's page under base, the admin listener as users
// reach it ([digest] url): BASE/q/TOKEN.
func Link(base string, key []byte, t Token) string {
	return strings.TrimRight(base, "/") + "/q/" + Sign(key, t)
}

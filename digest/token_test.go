package digest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"mxgate/spool"
)

var (
	testKey = bytes.Repeat([]byte{0x5a}, KeySize)
	testNow = time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
)

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func testToken(a Action) Token {
	return Token{Action: a, ID: "1xaQS4-0HvXwe-6f", Recipient: "Bob@example.test", Expires: testNow.Add(time.Hour)}
}

func TestTokenRoundTrip(t *testing.T) {
	for _, a := range []Action{Release, Delete} {
		want := testToken(a)
		s := Sign(testKey, want)
		if strings.ContainsAny(s, "/+=?#& ") {
			t.Errorf("token %q is not URL-safe", s)
		}
		got, err := Verify(testKey, s, testNow)
		if err != nil || got.Action != want.Action || got.ID != want.ID || got.Recipient != want.Recipient || !got.Expires.Equal(want.Expires) {
			t.Errorf("Verify(Sign(%+v)) = %+v, %v", want, got, err)
		}
	}
	if got, want := Link("https://mx.example.test:8025/", testKey, testToken(Release)), "https://mx.example.test:8025/q/"+Sign(testKey, testToken(Release)); got != want {
		t.Errorf("Link = %q, want %q", got, want)
	}
}

// Every character of a token, in the payload, the separator and the
// signature, changed to any other is refused as not valid.
func TestTokenAltered(t *testing.T) {
	s := Sign(testKey, testToken(Release))
	dot := strings.IndexByte(s, '.')
	for i := range len(s) {
		for _, c := range b64Alphabet + "." {
			if byte(c) == s[i] {
				continue
			}
			altered := s[:i] + string(c) + s[i+1:]
			if _, err := Verify(testKey, altered, testNow); !errors.Is(err, ErrInvalid) {
				part := "payload"
				switch {
				case i == dot:
					part = "separator"
				case i > dot:
					part = "signature"
				}
				t.Fatalf("%s character %d changed to %q: Verify = %v, want ErrInvalid", part, i, c, err)
			}
		}
	}
	for name, bad := range map[string]string{
		"empty":          "",
		"no signature":   s[:dot],
		"truncated":      s[:len(s)-1],
		"extended":       s + "A",
		"other key":      Sign(bytes.Repeat([]byte{1}, KeySize), testToken(Release)),
		"two separators": s + ".x",
	} {
		if _, err := Verify(testKey, bad, testNow); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify = %v, want ErrInvalid", name, err)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	tok := testToken(Delete)
	s := Sign(testKey, tok)
	for _, tc := range []struct {
		now  time.Time
		want error
	}{
		{tok.Expires.Add(-time.Second), nil},
		{tok.Expires, ErrExpired},
		{tok.Expires.Add(24 * time.Hour), ErrExpired},
	} {
		if _, err := Verify(testKey, s, tc.now); !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("Verify at %v = %v, want %v", tc.now, err, tc.want)
		}
	}
}

// A payload signed with the right key that is not one Sign makes (an
// unknown action, another version, a bad ID) is refused all the same.
func TestTokenWrongAction(t *testing.T) {
	for name, tok := range map[string]Token{
		"unknown action": {Action: "forward", ID: "1xaQS4-0HvXwe-6f", Recipient: "bob@example.test", Expires: testNow.Add(time.Hour)},
		"empty action":   {ID: "1xaQS4-0HvXwe-6f", Recipient: "bob@example.test", Expires: testNow.Add(time.Hour)},
		"path as ID":     {Action: Release, ID: spool.ID("../../etc/passwd"), Recipient: "bob@example.test", Expires: testNow.Add(time.Hour)},
		"no recipient":   {Action: Release, ID: "1xaQS4-0HvXwe-6f", Expires: testNow.Add(time.Hour)},
		"line break":     {Action: Release, ID: "1xaQS4-0HvXwe-6f", Recipient: "bob@example.test\nx", Expires: testNow.Add(time.Hour)},
	} {
		if _, err := Verify(testKey, Sign(testKey, tok), testNow); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify = %v, want ErrInvalid", name, err)
		}
	}
}

// FuzzVerify: whatever a client puts in the URL, Verify never panics,
// and what it accepts is what Sign made.
func FuzzVerify(f *testing.F) {
	f.Add(Sign(testKey, testToken(Release)))
	f.Add(Sign(testKey, testToken(Delete)))
	f.Add("")
	f.Add(".")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Verify(testKey, s, testNow)
		if err == nil && Sign(testKey, tok) != s {
			t.Errorf("Verify accepted %q, which Sign writes as %q", s, Sign(testKey, tok))
		}
	})
}

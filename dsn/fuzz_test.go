package dsn

import (
	"regexp"
	"strings"
	"testing"
)

var statusShape = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// FuzzEnhancedStatus: EnhancedStatus reads remote replies. Whatever it
// returns is a well-formed code taken from the text, after a reply code
// of the same class.
func FuzzEnhancedStatus(f *testing.F) {
	f.Add("550 5.1.1 no such user")
	f.Fuzz(func(t *testing.T, text string) {
		s := EnhancedStatus(text)
		if s == "" {
			return
		}
		if !statusShape.MatchString(s) {
			t.Fatalf("EnhancedStatus(%q) = %q, not class.subject.detail", text, s)
		}
		if !strings.Contains(text, s[:1]) || !strings.Contains(text, " "+s) && !strings.Contains(text, "-"+s) {
			t.Fatalf("EnhancedStatus(%q) = %q, not after a reply code", text, s)
		}
	})
}

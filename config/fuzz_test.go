package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary text to Parse: it must not panic, every line of
// an error must start with the file name (and a line number where there is
// one), and an accepted config must print to text that parses back equal.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.toml:") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			return
		}
		text := c.String()
		back, err := Parse("fuzz.toml", []byte(text))
		if err != nil {
			t.Fatalf("String() of an accepted config does not parse: %v\n%s", err, text)
		}
		back.Warnings = c.Warnings // about the text, not the configuration
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n%s\nbecame\n%s", text, back)
		}
	})
}

// FuzzDuration checks that every accepted duration prints to text that reads
// back to the same value.
func FuzzDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		var d Duration
		if d.UnmarshalText([]byte(s)) != nil {
			return
		}
		b, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Fatalf("%q read as %v, printed as %q, read back as %v (%v)", s, time.Duration(d), b, time.Duration(back), err)
		}
	})
}

// FuzzSize checks that an accepted size is never negative and prints to
// text that reads back to the same value.
func FuzzSize(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		var n Size
		if n.UnmarshalText([]byte(s)) != nil {
			return
		}
		if n < 0 {
			t.Fatalf("%q read as negative size %d", s, n)
		}
		var back Size
		if err := back.UnmarshalText([]byte(n.String())); err != nil || back != n {
			t.Fatalf("%q read as %d, printed as %q, read back as %d (%v)", s, n, n.String(), back, err)
		}
	})
}

package smtptext

import (
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"550 5.1.1 no such user", "550 5.1.1 no such user"},
		{"two\r\nlines\ttab", "two  lines tab"},
		{"ctl\x00\x1b[31m\x7f", "ctl??[31m?"},
		{"caf\xc3\xa9", "caf??"},
		{strings.Repeat("x", 400), strings.Repeat("x", MaxQuoted)},
	}
	for _, tt := range tests {
		if got := Clean(tt.in); got != tt.want {
			t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzClean(f *testing.F) {
	f.Add("550-a\r\n550 b")
	f.Fuzz(func(t *testing.T, s string) {
		c := Clean(s)
		if len(c) > MaxQuoted {
			t.Fatalf("len %d", len(c))
		}
		for i := 0; i < len(c); i++ {
			if c[i] < 0x20 || c[i] >= 0x7f {
				t.Fatalf("byte %#x in %q", c[i], c)
			}
		}
	})
}

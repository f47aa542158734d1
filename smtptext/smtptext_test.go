package smtptext

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
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
		for _, c := range []string{Clean(s), CleanMax(s, MaxQuoted)} {
			if len(c) > MaxQuoted {
				t.Fatalf("len %d", len(c))
			}
			for i := 0; i < len(c); i++ {
				if c[i] < 0x20 || c[i] >= 0x7f {
					t.Fatalf("byte %#x in %q", c[i], c)
				}
			}
		}
	})
}

func TestCleanMax(t *testing.T) {
	long := strings.Repeat("x", 500)
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"550 5.1.1 no such user", 400, "550 5.1.1 no such user"},
		{"550 a\r\n550 b", 400, "550 a  550 b"},
		{"tab\there", 0, "tab here"},
		{"550 \x00\x1b[31m caf\xc3\xa9\x7f", 400, "550 ??[31m caf???"},
		{long, 400, long[:397] + "..."},
		{long, 0, long},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abc..."},
		{"abcdefg", 2, ".."},
		{"", 10, ""},
	}
	for _, tt := range tests {
		got := CleanMax(tt.in, tt.max)
		if got != tt.want {
			t.Errorf("CleanMax(%.40q, %d) = %.60q, want %.60q", tt.in, tt.max, got, tt.want)
		}
		if tt.max > 0 && len(got) > tt.max {
			t.Errorf("CleanMax(%.40q, %d): %d bytes", tt.in, tt.max, len(got))
		}
	}
}

func TestReply(t *testing.T) {
	tests := []struct {
		code int
		enh  [3]int
		text string
		want string
	}{
		{550, [3]int{5, 1, 1}, "No such user", "550 5.1.1 No such user"},
		{451, [3]int{}, "Try later", "451 Try later"},
		{421, [3]int(smtp.NoEnhancedCode), "closing", "421 closing"},
		{250, [3]int{2, 0, 0}, "first\nsecond\r\nthird", "250 2.0.0 first second third"},
		{354, [3]int{}, "", "354"},
	}
	for _, tt := range tests {
		if got := Reply(tt.code, tt.enh, tt.text); got != tt.want {
			t.Errorf("Reply(%d, %v, %q) = %q, want %q", tt.code, tt.enh, tt.text, got, tt.want)
		}
	}
	e := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Spam\ndetected"}
	if got := FromError(e); got != "550 5.7.1 Spam detected" {
		t.Errorf("FromError = %q", got)
	}
	if got := FromError(&smtp.SMTPError{Code: 452, Message: "full"}); got != "452 full" {
		t.Errorf("FromError without enhanced code = %q", got)
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		code int
		enh  [3]int
		text string
		want []string
	}{
		{550, [3]int{5, 7, 1}, "Rejected", []string{"550 5.7.1 Rejected"}},
		{550, [3]int{5, 7, 1}, "Rejected\nsee https://example.test", []string{"550-5.7.1 Rejected", "550 5.7.1 see https://example.test"}},
		{451, [3]int{}, "a\r\nb\nc", []string{"451-a", "451-b", "451 c"}},
		{250, [3]int{2, 0, 0}, "", []string{"250 2.0.0"}},
	}
	for _, tt := range tests {
		if got := Lines(tt.code, tt.enh, tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("Lines(%d, %v, %q) = %q, want %q", tt.code, tt.enh, tt.text, got, tt.want)
		}
	}
}

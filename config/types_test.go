package config

import (
	"strings"
	"testing"
	"time"
)

func TestDurationUnmarshalText(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string // "" means accepted
	}{
		{"0", 0, ""},
		{"30s", 30 * time.Second, ""},
		{"5m", 5 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"4d", 96 * time.Hour, ""},
		{"1.5d", 36 * time.Hour, ""},
		{"1w", 168 * time.Hour, ""},
		{"1w2d12h", 228 * time.Hour, ""},
		{"-5m", -5 * time.Minute, ""},
		{"2562047h", 2562047 * time.Hour, ""},
		{"", 0, `invalid duration "": empty`},
		{"-", 0, `invalid duration "-": empty`},
		{"5", 0, `invalid duration "5": missing unit after 5`},
		{"1h5", 0, `invalid duration "1h5": missing unit after 5`},
		{"d", 0, `invalid duration "d": expected a number`},
		{"5 minutes", 0, `invalid duration "5 minutes": unknown unit " minutes"`},
		{"5y", 0, `invalid duration "5y": unknown unit "y"`},
		{"1..5h", 0, `invalid duration "1..5h": cannot read "1..5h"`},
		{"3000000h", 0, `invalid duration "3000000h": cannot read "3000000h"`},
		{"200000w", 0, `invalid duration "200000w": too large`},
		{"2562047h2562047h", 0, `invalid duration "2562047h2562047h": too large`},
	}
	const hint = ` (want e.g. "30s", "5m", "1h30m", "4d", "1w")`
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			switch {
			case tt.err != "":
				if err == nil || err.Error() != tt.err+hint {
					t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.in, err, tt.err+hint)
				}
			case err != nil:
				t.Errorf("UnmarshalText(%q) error = %v", tt.in, err)
			case time.Duration(d) != tt.want:
				t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, time.Duration(d), tt.want)
			}
		})
	}
}

func TestDurationMarshalText(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{30 * time.Second, "30s"},
		{5 * time.Minute, "5m"},
		{90 * time.Second, "1m30s"},
		{96 * time.Hour, "4d"},
		{36 * time.Hour, "1d12h"},
		{7 * 24 * time.Hour, "7d"},
		{1500 * time.Microsecond, "1ms500us"},
		{-time.Hour, "-1h"},
	}
	for _, tt := range tests {
		b, err := Duration(tt.d).MarshalText()
		if err != nil || string(b) != tt.want {
			t.Errorf("MarshalText(%v) = %q, %v; want %q", tt.d, b, err, tt.want)
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || time.Duration(back) != tt.d {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, time.Duration(back), err, tt.d)
		}
	}
}

func TestSizeUnmarshalText(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		err  string // "" means accepted
	}{
		{"0", 0, ""},
		{"52428800", 52428800, ""},
		{"500K", 500 << 10, ""},
		{"500kb", 500_000, ""},
		{"500KiB", 500 << 10, ""},
		{"50M", 50 << 20, ""},
		{"50MiB", 50 << 20, ""},
		{"50MB", 50_000_000, ""},
		{"50 MB", 50_000_000, ""},
		{"1G", 1 << 30, ""},
		{"1GB", 1_000_000_000, ""},
		{"1gib", 1 << 30, ""},
		{"100B", 100, ""},
		{"8589934591G", 8589934591 << 30, ""},
		{"", 0, `invalid size "": expected a whole number of bytes`},
		{"M", 0, `invalid size "M": expected a whole number of bytes`},
		{"-5M", 0, `invalid size "-5M": expected a whole number of bytes`},
		{"1.5M", 0, `invalid size "1.5M": unknown unit ".5M"`},
		{"50  M", 0, `invalid size "50  M": unknown unit "  M"`},
		{"5T", 0, `invalid size "5T": unknown unit "T"`},
		{"99999999999999999999", 0, `invalid size "99999999999999999999": too large`},
		{"8589934592G", 0, `invalid size "8589934592G": too large`},
	}
	const hint = ` (want e.g. 52428800, "500K", "50M", "50MiB", "1G")`
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var s Size
			err := s.UnmarshalText([]byte(tt.in))
			switch {
			case tt.err != "":
				if err == nil || err.Error() != tt.err+hint {
					t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.in, err, tt.err+hint)
				}
			case err != nil:
				t.Errorf("UnmarshalText(%q) error = %v", tt.in, err)
			case s != tt.want:
				t.Errorf("UnmarshalText(%q) = %d, want %d", tt.in, s, tt.want)
			}
		})
	}
}

// TestSizeString: a size prints in the biggest unit that divides it,
// binary first, and reads back to itself.
func TestSizeString(t *testing.T) {
	for _, tt := range []struct {
		n    Size
		want string
	}{
		{0, "0"},
		{1234, "1234"},
		{512000, "500KiB"},
		{50 << 20, "50MiB"},
		{50_000_000, "50MB"},
		{1 << 30, "1GiB"},
		{3_000_000_000, "3GB"},
		{1536 << 10, "1536KiB"},
	} {
		if got := tt.n.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", tt.n, got, tt.want)
		}
		var back Size
		if err := back.UnmarshalText([]byte(tt.n.String())); err != nil || back != tt.n {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", tt.n.String(), back, err, tt.n)
		}
	}
}

func TestValidDomain(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"localhost", true},
		{"mx1.example.test", true},
		{"xn--bcher-kva.example", true},
		{"a-b.c", true},
		{"", false},
		{"example.test.", false},
		{".example.test", false},
		{"a..b", false},
		{"-a.b", false},
		{"a-.b", false},
		{"a_b.c", false},
		{"bücher.example", false},
		{"*.example.test", false},
		{strings.Repeat("a", 63) + ".test", true},
		{strings.Repeat("a", 64) + ".test", false},
		{strings.Repeat("abc.", 63) + "a", true},   // 253 bytes
		{strings.Repeat("abc.", 63) + "ab", false}, // 254 bytes
	}
	for _, tt := range tests {
		if got := validDomain(tt.in); got != tt.want {
			t.Errorf("validDomain(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

package admin

import (
	"testing"
	"time"
)

// The expected strings follow Exim 4.96's queue_list (age) and
// string_format_size (size) rule by rule, at each boundary.
func TestFormatAge(t *testing.T) {
	for _, c := range []struct {
		age  time.Duration
		want string
	}{
		{0, " 0m"},
		{59 * time.Second, " 0m"},
		{25*time.Minute + 59*time.Second, "25m"},
		{90*time.Minute + 59*time.Second, "90m"}, // minutes while <= 90
		{91 * time.Minute, " 2h"},                // (91+30)/60
		{149 * time.Minute, " 2h"},               // (149+30)/60 = 2
		{150 * time.Minute, " 3h"},               // rounds up at the half hour
		{72*time.Hour + 29*time.Minute, "72h"},   // hours while <= 72
		{72*time.Hour + 30*time.Minute, " 3d"},   // 73h: (73+12)/24
		{83*time.Hour + 30*time.Minute, " 4d"},   // 84h: (84+12)/24
		{100 * 24 * time.Hour, "100d"},           // wider than two columns
		{-5*time.Minute - 30*time.Second, "-5m"}, // a clock set back: C truncates toward zero
		{-30 * time.Second, " 0m"},
	} {
		if got := FormatAge(c.age); got != c.want {
			t.Errorf("FormatAge(%v) = %q, want %q", c.age, got, c.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "     "},
		{1, "    1"},
		{1023, " 1023"},
		{1024, " 1.0K"},
		{2969, " 2.9K"},
		{10239, "10.0K"}, // %4.1f rounds 9.999
		{10240, "  10K"}, // (n+512)/1024
		{10751, "  10K"},
		{10752, "  11K"},
		{1048575, "1024K"},
		{1048576, " 1.0M"},
		{5 * 1048576 / 2, " 2.5M"},
		{10485759, "10.0M"},
		{10485760, "  10M"},
		{10485760 + 524287, "  10M"},
		{10485760 + 524288, "  11M"},
		{1 << 40, "1048576M"},
	} {
		if got := FormatSize(c.n); got != c.want {
			t.Errorf("FormatSize(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

package retry

import (
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 10, 0, 0, 0, time.Local)

// A message deferred at t0 and failing at every try (each on time) under
// Exim's default rule: every 15m until 2h, then 1h, 1.5h, 2.25h ... until
// 16h, then every 6h; the first failed try past 4 days gives up.
func TestDefaultScheduleTries(t *testing.T) {
	s, err := Parse(Default)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"15m", "30m", "45m", "1h", "1h15m", "1h30m", "1h45m", "2h", "2h15m", // F,2h,15m
		"3h15m", "4h45m", "7h", "10h22m30s", "15h26m15s", "23h1m52.5s", // G,16h,1h,1.5
		"29h1m52.5s", "35h1m52.5s", "41h1m52.5s", "47h1m52.5s", "53h1m52.5s", // F,4d,6h
		"59h1m52.5s", "65h1m52.5s", "71h1m52.5s", "77h1m52.5s", "83h1m52.5s",
		"89h1m52.5s", "95h1m52.5s", "101h1m52.5s",
	}
	last, attempts := t0, 1
	for i, w := range want {
		next, giveUp := s.Next(t0, last, attempts)
		if giveUp {
			t.Fatalf("try %d (at t0+%v) gave up; want a retry at t0+%s", attempts, last.Sub(t0), w)
		}
		if got := next.Sub(t0); got != mustDuration(t, w) {
			t.Fatalf("retry %d after the try at t0+%v: at t0+%v, want t0+%s", i+1, last.Sub(t0), got, w)
		}
		last, attempts = next, attempts+1
	}
	// The try at 4d5h1m52.5s is the first past the 4d cutoff.
	if next, giveUp := s.Next(t0, last, attempts); !giveUp {
		t.Fatalf("try at t0+%v (past 4d) did not give up; next at t0+%v", last.Sub(t0), next.Sub(t0))
	}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name     string
		rule     string
		elapsed  string // lastTry - firstFailed
		attempts int
		jitter   float64
		want     string // next - lastTry; "" = give up
	}{
		{"first try", "F,2h,15m; F,4d,6h", "0s", 1, 0, "15m"},
		{"at the cutoff the rule still applies", "F,2h,15m; F,4d,6h", "2h", 9, 0, "15m"},
		{"just past the cutoff the next rule applies", "F,2h,15m; F,4d,6h", "2h0m1s", 10, 0, "6h"},
		{"at the last cutoff", "F,2h,15m; F,4d,6h", "96h", 20, 0, "6h"},
		{"past the last cutoff", "F,2h,15m; F,4d,6h", "96h0m1s", 21, 0, ""},
		{"geometric first step", "G,1d,1h,2", "0s", 1, 0, "1h"},
		{"geometric third step", "G,1d,1h,2", "3h", 3, 0, "4h"},
		{"geometric mid-step keeps the step", "G,1d,1h,2", "2h59m", 3, 0, "2h"},
		{"geometric steps start at the rule's start", "F,1h,15m; G,1d,1h,2", "2h1m", 10, 0, "2h"},
		{"geometric step capped by attempts (late try)", "G,1d,1h,2", "7h", 1, 0, "1h"},
		{"geometric factor 1 is fixed", "G,1d,30m,1", "5h", 11, 0, "30m"},
		{"geometric capped at MaxInterval", "G,30d,1d,3", "5d", 10, 0, "24h"},
		{"huge factor does not overflow", "G,30d,1h,1e300", "2h", 10, 0, "24h"},
		{"randomised, jitter 0: the full interval", "H,1d,1h,2", "3h", 3, 0, "4h"},
		{"randomised, jitter 0.5", "H,1d,1h,2", "3h", 3, 0.5, "3h"},
		{"randomised, jitter near 1: half", "H,1d,1h,2", "1h", 2, 0.999999, "1h0m0.0036s"},
		{"d and w units", "F,1w,1d", "6d", 7, 0, "24h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			s.jitter = func() float64 { return tc.jitter }
			last := t0.Add(mustDuration(t, tc.elapsed))
			next, giveUp := s.Next(t0, last, tc.attempts)
			if tc.want == "" {
				if !giveUp {
					t.Fatalf("Next = %v after lastTry, want give up", next.Sub(last))
				}
				return
			}
			if giveUp {
				t.Fatalf("gave up, want next after %s", tc.want)
			}
			if got := next.Sub(last); got != mustDuration(t, tc.want) {
				t.Fatalf("next = lastTry+%v, want lastTry+%s", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ rule, want string }{
		{"", "retry rule is empty: need at least one of F,cutoff,interval / G,cutoff,start,multiplier / H,cutoff,start,multiplier"},
		{"  ", "retry rule is empty: need at least one of F,cutoff,interval / G,cutoff,start,multiplier / H,cutoff,start,multiplier"},
		{"F,2h,15m; G,16h,1h; F,4d,6h", `retry rule item 2 "G,16h,1h": geometric needs cutoff, start and multiplier`},
		{"H,16h,1h", `retry rule item 1 "H,16h,1h": randomised geometric needs cutoff, start and multiplier`},
		{"F,2h", `retry rule item 1 "F,2h": fixed needs cutoff and interval`},
		{"F,2h,15m,1.5", `retry rule item 1 "F,2h,15m,1.5": fixed needs cutoff and interval`},
		{"F,2h,15m;", `retry rule item 2 "": empty item: need F, G or H and its parameters`},
		{"X,2h,15m", `retry rule item 1 "X,2h,15m": unknown kind "X": want F (fixed), G (geometric) or H (randomised geometric)`},
		{"f,2h,15m", `retry rule item 1 "f,2h,15m": unknown kind "f": want F (fixed), G (geometric) or H (randomised geometric)`},
		{"F,2x,15m", `retry rule item 1 "F,2x,15m": cutoff: invalid duration "2x": want Go syntax plus d and w (30m, 4d, 1w)`},
		{"F,2h,15", `retry rule item 1 "F,2h,15": interval: invalid duration "15": want Go syntax plus d and w (30m, 4d, 1w)`},
		{"F,2h,", `retry rule item 1 "F,2h,": interval: empty duration`},
		{"F,0s,15m", `retry rule item 1 "F,0s,15m": cutoff "0s" must be positive`},
		{"F,2h,0", `retry rule item 1 "F,2h,0": interval "0" must be positive`},
		{"F,-2h,15m", `retry rule item 1 "F,-2h,15m": cutoff: invalid duration "-2h": want Go syntax plus d and w (30m, 4d, 1w)`},
		{"F,9999999999w,1h", `retry rule item 1 "F,9999999999w,1h": cutoff: duration "9999999999w" is too long`},
		{"F,2h,15m; G,1h,1h,2", `retry rule item 2 "G,1h,1h,2": cutoff is not after the previous item's, so this item would never apply`},
		{"G,16h,1h,x", `retry rule item 1 "G,16h,1h,x": multiplier "x" is not a number`},
		{"G,16h,1h,NaN", `retry rule item 1 "G,16h,1h,NaN": multiplier "NaN" is not a number`},
		{"G,16h,1h,0.5", `retry rule item 1 "G,16h,1h,0.5": multiplier "0.5" must be at least 1`},
	}
	for _, tc := range tests {
		_, err := Parse(tc.rule)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error %s", tc.rule, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("Parse(%q)\n got error %s\nwant error %s", tc.rule, err, tc.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"90s", 90 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"4d", 96 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{"1w", 168 * time.Hour},
		{"1w2d3h", 219 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"250ms", 250 * time.Millisecond},
	}
	for _, tc := range tests {
		got, err := parseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "d", "1.2.3d", "1x", "5", "1h30", "h", ".d", "-1d"} {
		if got, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", bad, got)
		}
	}
}

// FuzzParse: no input makes the parser or Next panic, and a rule
// that parses gives retries that move forward by at most MaxInterval
// and gives up exactly past its last cutoff.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, rule string, elapsed int64, attempts int) {
		s, err := Parse(rule)
		if err != nil {
			return
		}
		if elapsed < 0 {
			elapsed = -elapsed
		}
		last := t0.Add(time.Duration(elapsed))
		next, giveUp := s.Next(t0, last, attempts)
		if past := last.Sub(t0) > s.rules[len(s.rules)-1].cutoff; giveUp != past {
			t.Fatalf("%q: elapsed %v: giveUp = %v, want %v", rule, last.Sub(t0), giveUp, past)
		}
		if !giveUp && (!next.After(last) || next.Sub(last) > MaxInterval) {
			t.Fatalf("%q: elapsed %v attempts %d: next = lastTry%+v", rule, last.Sub(t0), attempts, next.Sub(last))
		}
	})
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := parseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

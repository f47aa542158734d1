package digest

import (
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	at7 := 7 * time.Hour
	tests := []struct {
		name, schedule string
		at             time.Duration
		now, want      time.Time
	}{
		{"daily before at", "daily", at7, time.Date(2026, 12, 7, 6, 59, 0, 0, berlin), time.Date(2026, 12, 7, 7, 0, 0, 0, berlin)},
		{"daily at at", "daily", at7, time.Date(2026, 12, 7, 7, 0, 0, 0, berlin), time.Date(2026, 12, 8, 7, 0, 0, 0, berlin)},
		{"daily after at", "daily", at7, time.Date(2026, 12, 7, 7, 0, 1, 0, berlin), time.Date(2026, 12, 8, 7, 0, 0, 0, berlin)},
		{"daily end of month", "daily", 23*time.Hour + 30*time.Minute, time.Date(2026, 12, 31, 23, 45, 0, 0, berlin), time.Date(2027, 1, 1, 23, 30, 0, 0, berlin)},
		// The clocks go forward at 02:00 on 29 March 2026: still 07:00.
		{"daily over DST", "daily", at7, time.Date(2026, 3, 28, 12, 0, 0, 0, berlin), time.Date(2026, 3, 29, 7, 0, 0, 0, berlin)},
		{"weekly on Monday before at", "weekly", at7, time.Date(2026, 12, 7, 6, 0, 0, 0, berlin), time.Date(2026, 12, 7, 7, 0, 0, 0, berlin)},
		{"weekly on Monday after at", "weekly", at7, time.Date(2026, 12, 7, 8, 0, 0, 0, berlin), time.Date(2026, 12, 14, 7, 0, 0, 0, berlin)},
		{"weekly on Sunday", "weekly", at7, time.Date(2026, 12, 13, 23, 0, 0, 0, berlin), time.Date(2026, 12, 14, 7, 0, 0, 0, berlin)},
		{"hourly", "hourly", at7, time.Date(2026, 12, 7, 6, 15, 0, 0, berlin), time.Date(2026, 12, 7, 7, 0, 0, 0, berlin)},
		{"hourly on the hour", "hourly", at7, time.Date(2026, 12, 7, 7, 0, 0, 0, berlin), time.Date(2026, 12, 7, 8, 0, 0, 0, berlin)},
		{"hourly at midnight", "hourly", at7, time.Date(2026, 12, 31, 23, 59, 0, 0, berlin), time.Date(2027, 1, 1, 0, 0, 0, 0, berlin)},
		{"off", "off", at7, time.Date(2026, 12, 7, 6, 0, 0, 0, berlin), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Next(tt.schedule, tt.at, tt.now); !got.Equal(tt.want) {
				t.Errorf("Next(%q, %v, %v) = %v, want %v", tt.schedule, tt.at, tt.now, got, tt.want)
			}
		})
	}
}

package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		at        time.Duration
		ip, user  string
		fail      bool // else: ask Blocked
		wantBlock bool
	}
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"three failures of one user from different IPs block the user", []step{
			{0, "1.1.1.1", "u", true, false},
			{time.Second, "2.2.2.2", "u", true, false},
			{2 * time.Second, "3.3.3.3", "u", true, true},
			{3 * time.Second, "4.4.4.4", "u", false, true},
			{3 * time.Second, "4.4.4.4", "v", false, false},
		}},
		{"the spelling of a user does not matter", []step{
			{0, "1.1.1.1", "Alice", true, false},
			{0, "2.2.2.2", "ALICE", true, false},
			{0, "3.3.3.3", "alice", true, true},
			{0, "4.4.4.4", "aLiCe", false, true},
		}},
		{"three failures from one IP block it for every user", []step{
			{0, "1.1.1.1", "a", true, false},
			{0, "1.1.1.1", "b", true, false},
			{0, "1.1.1.1", "c", true, true},
			{time.Minute, "1.1.1.1", "d", false, true},
		}},
		{"failures outside the window are forgotten", []step{
			{0, "1.1.1.1", "u", true, false},
			{0, "1.1.1.1", "u", true, false},
			{11 * time.Minute, "1.1.1.1", "u", true, false},
			{11 * time.Minute, "1.1.1.1", "u", false, false},
		}},
		{"a block ends after block_time", []step{
			{0, "1.1.1.1", "u", true, false},
			{0, "1.1.1.1", "u", true, false},
			{0, "1.1.1.1", "u", true, true},
			{59 * time.Minute, "1.1.1.1", "u", false, true},
			{61 * time.Minute, "1.1.1.1", "u", false, false},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := NewThrottle(3, 10*time.Minute, time.Hour)
			for i, s := range tt.steps {
				var got bool
				if s.fail {
					got = th.Fail(t0.Add(s.at), s.ip, s.user)
				} else {
					got = th.Blocked(t0.Add(s.at), s.ip, s.user)
				}
				if got != s.wantBlock {
					t.Errorf("step %d (%+v): blocked = %v", i, s, got)
				}
			}
		})
	}
}

// TestThrottleBounded: past maxKeys the counts are forgotten, the blocks
// kept.
func TestThrottleBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	th := NewThrottle(2, time.Hour, time.Hour)
	th.maxKeys = 10
	th.Fail(t0, "9.9.9.9", "")
	th.Fail(t0, "9.9.9.9", "") // blocked
	for i := range 20 {
		th.Fail(t0, fmt.Sprintf("10.0.0.%d", i), "")
	}
	if len(th.keys) > 10 {
		t.Errorf("%d records kept, want at most 10", len(th.keys))
	}
	if !th.Blocked(t0, "9.9.9.9", "") {
		t.Error("the block was forgotten")
	}
}

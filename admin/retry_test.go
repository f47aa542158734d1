package admin

import (
	"strings"
	"testing"
	"time"
)

func TestScanDeferrals(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	msglog := strings.Join([]string{
		"2024-05-01 10:00:00 Received from a@example.test H=(client) [127.0.0.1] P=esmtp S=300",
		"2024-05-01 10:00:01 == bob@example.test R=downstream T=lmtp defer (111): Connection refused",
		"2024-05-01 10:00:01 ** carol@example.test R=downstream T=lmtp: 550 5.1.1 no such user",
		"*** Frozen (delivery error message)",
		"garbage == bob@example.test R=x T=y defer (1): not a line of the log",
		"2024-13-01 10:00:00 == bob@example.test R=x T=y defer (1): a bad date",
		"2024-05-01 10:30:00 == dave@example.test R=dnslookup T=smtp defer (-53): retry time not reached for any host",
		"2024-05-01 11:00:00 == bob@example.test R=downstream T=lmtp defer (-46): 452 4.2.2 == full ==",
		"2024-05-01 11:00:00 ==",
		"",
	}, "\n")
	last := map[string]deferral{}
	if err := scanDeferrals(strings.NewReader(msglog), last); err != nil {
		t.Fatal(err)
	}
	want := map[string]deferral{
		"bob@example.test":  {at("2024-05-01 11:00:00"), "R=downstream T=lmtp defer (-46): 452 4.2.2 == full =="},
		"dave@example.test": {at("2024-05-01 10:30:00"), "R=dnslookup T=smtp defer (-53): retry time not reached for any host"},
	}
	if len(last) != len(want) {
		t.Errorf("got %d recipients, want %d: %v", len(last), len(want), last)
	}
	for rcpt, w := range want {
		if g := last[rcpt]; !g.at.Equal(w.at) || g.text != w.text {
			t.Errorf("%s: %v %q, want %v %q", rcpt, g.at, g.text, w.at, w.text)
		}
	}
}

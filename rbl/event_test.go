package rbl

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"mxgate/event"
	"mxgate/filters"
	"mxgate/internal/eventtest"
)

// TestVerdictList: the verdicts name the list that decided (a refusal's
// strongest listing, a tag's heaviest), as data for metrics and tracking.
func TestVerdictList(t *testing.T) {
	srv := startZone(t, map[string][]string{
		"1.2.0.192.bl.test. A":  {"1.2.0.192.bl.test. 300 IN A 127.0.0.2"},
		"1.2.0.192.bl2.test. A": {"1.2.0.192.bl2.test. 300 IN A 127.0.0.2"},
		"2.2.0.192.bl2.test. A": {"2.2.0.192.bl2.test. 300 IN A 127.0.0.2"},
	})
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Lists: []List{
		{Zone: "bl.test", Kind: KindIP, Weight: 1},
		{Zone: "bl2.test", Kind: KindIP, Weight: 3},
	}})
	k := NewCheck(c, CheckOptions{RejectScore: 4, TagScore: 3, Timeout: 2 * time.Second})
	for _, tt := range []struct {
		ip     string
		action filters.Action
		code   string
		list   string
	}{
		{"192.0.2.1", filters.Reject, "rbl-listed", "bl2.test"}, // 1 + 3: refused; bl2.test weighs most
		{"192.0.2.2", filters.Tag, "rbl-score", "bl2.test"},     // 3: tagged at DATA
		{"192.0.2.3", filters.Accept, "", ""},
	} {
		s := k.Open(context.Background(), &filters.Conn{IP: netip.MustParseAddr(tt.ip)})
		tx := &filters.Tx{Sender: "a@b.test"}
		s.Mail(context.Background(), tx)
		v := s.Rcpt(context.Background(), tx, "u@example.test")
		if tt.action == filters.Tag {
			v = s.Data(context.Background(), &filters.Message{})
		}
		if v.Action != tt.action || v.ReasonCode != tt.code || v.List != tt.list {
			t.Errorf("%s: %s %q list %q, want %s %q list %q", tt.ip, v.Action, v.ReasonCode, v.List, tt.action, tt.code, tt.list)
		}
		s.Close()
	}
}

// TestLookupEvents: every question is a DNSLookup event, Cached when the
// cache answered it.
func TestLookupEvents(t *testing.T) {
	srv := startZone(t, map[string][]string{
		"1.2.0.192.bl.test. A":   {"1.2.0.192.bl.test. 300 IN A 127.0.0.2"},
		"1.2.0.192.bl.test. TXT": {`1.2.0.192.bl.test. 300 IN TXT "listed"`},
	})
	rec, bus := eventtest.New()
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Bus: bus, Lists: []List{{Zone: "bl.test", Kind: KindIP, Weight: 1}}})
	ip := netip.MustParseAddr("192.0.2.1")
	type lookup struct {
		qtype  string
		cached bool
	}
	lookups := func() []lookup {
		var ls []lookup
		for _, e := range rec.Of(event.DNSLookup) {
			if e.Err != nil {
				t.Errorf("lookup failed: %v", e.Err)
			}
			if !e.Cached && e.Duration <= 0 {
				t.Errorf("an asked lookup with no duration: %+v", e)
			}
			ls = append(ls, lookup{e.QType, e.Cached})
		}
		rec.Reset()
		return ls
	}
	wait(t, c.StartIP(context.Background(), ip))
	if got, want := lookups(), []lookup{{"A", false}, {"TXT", false}}; !slices.Equal(got, want) {
		t.Errorf("first lookup: %v, want %v", got, want)
	}
	wait(t, c.StartIP(context.Background(), ip))
	if got, want := lookups(), []lookup{{"A", true}, {"TXT", true}}; !slices.Equal(got, want) {
		t.Errorf("second lookup: %v, want %v", got, want)
	}
}

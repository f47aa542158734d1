package rbl

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mxgate/filters"
)

func TestDeferTextNotARejection(t *testing.T) {
	err := errors.New("resolver 127.0.0.1:1: read udp 127.0.0.1:5->127.0.0.1:1: connect: connection refused")
	if got := deferText(err); strings.Contains(got, "refused") || !strings.Contains(got, "connection REFUSED") {
		t.Errorf("deferText = %q: eximstats would count the line as a rejection", got)
	}
}

// TestAllowlisted: a client an allow-list (negative weight) lists is
// marked on its Conn once the lists are weighed at RCPT, for the checks
// after rbl (greylisting); a client only a block list lists is not.
func TestAllowlisted(t *testing.T) {
	srv := startZone(t, map[string][]string{
		"1.2.0.192.wl.test. A": {"1.2.0.192.wl.test. 300 IN A 127.0.0.2"},
		"2.2.0.192.bl.test. A": {"2.2.0.192.bl.test. 300 IN A 127.0.0.2"},
	})
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Lists: []List{
		{Zone: "bl.test", Kind: KindIP, Weight: 1},
		{Zone: "wl.test", Kind: KindIP, Weight: -5},
	}})
	k := NewCheck(c, CheckOptions{RejectScore: 10, TagScore: 5, Timeout: 2 * time.Second})
	for _, tt := range []struct {
		ip   string
		want bool
	}{{"192.0.2.1", true}, {"192.0.2.2", false}, {"192.0.2.3", false}} {
		conn := &filters.Conn{IP: netip.MustParseAddr(tt.ip)}
		s := k.Open(context.Background(), conn)
		if conn.Allowlisted.Load() {
			t.Errorf("%s: allow-listed before the lists were weighed", tt.ip)
		}
		s.Rcpt(context.Background(), &filters.Tx{Sender: "a@b.test"}, "u@example.test")
		if got := conn.Allowlisted.Load(); got != tt.want {
			t.Errorf("%s: Allowlisted %v, want %v", tt.ip, got, tt.want)
		}
		s.Close()
	}
}

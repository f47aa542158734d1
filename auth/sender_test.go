package auth

import (
	"context"
	"strings"
	"testing"

	"mxgate/filters"
	"mxgate/spool"
)

func TestOwns(t *testing.T) {
	for _, tt := range []struct {
		policy, login, addr string
		owned               []string
		want                bool
	}{
		{"login", "a@example.test", "a@example.test", nil, true},
		{"login", "a@example.test", "A@Example.Test", nil, true},
		{"login", "a@example.test", "b@example.test", nil, false},
		{"login_domain", "a@example.test", "b@EXAMPLE.test", nil, true},
		{"login_domain", "a@example.test", "b@sub.example.test", nil, false},
		{"login_domain", "a@example.test", "b@example.test.evil", nil, false},
		{"login_domain", "a", "a@example.test", nil, false},
		// The sender map adds addresses and domains to a login.
		{"login", "a@example.test", "Sales@Example.Test", []string{"sales@example.test"}, true},
		{"login", "a@example.test", "x@other.test", []string{"@other.test"}, true},
		{"login", "a@example.test", "x@sub.other.test", []string{"@other.test"}, false},
		{"login_domain", "a", "a@example.test", []string{"a@example.test"}, true},
		{"login", "a@example.test", "b@example.test", []string{"sales@example.test"}, false},
		{"any", "a", "x@y.test", nil, true},
	} {
		if got := Owns(tt.policy, tt.login, tt.addr, tt.owned); got != tt.want {
			t.Errorf("Owns(%s, %s, %s, %v) = %v, want %v", tt.policy, tt.login, tt.addr, tt.owned, got, tt.want)
		}
	}
}

func TestSenderHeader(t *testing.T) {
	hdr := func(text ...string) []spool.Header {
		var hs []spool.Header
		for _, s := range text {
			hs = append(hs, spool.Header{Type: ' ', Text: s})
		}
		return hs
	}
	for _, tt := range []struct {
		name      string
		setSender bool
		user      string
		headers   []spool.Header
		wantCode  int
		wantStamp string
		deleted   int // index of a field marked deleted, -1 none
	}{
		{"own From: no stamp", true, "a@example.test", hdr("From: A <a@example.test>\n"), 0, "", -1},
		{"other From: stamped, Sender: replaced", true, "a@example.test",
			hdr("From: b@example.test\n", "Sender: x@example.test\n"), 0, "Sender: a@example.test\n", 1},
		{"set_sender_header off", false, "a@example.test", hdr("From: b@example.test\n"), 0, "", -1},
		{"foreign From: refused", true, "a@example.test", hdr("From: a@example.test, e@evil.test\n"), 550, "", -1},
		{"unparsable From: refused", true, "a@example.test", hdr("From: <<<\n"), 550, "", -1},
		{"not authenticated", true, "", hdr("From: e@evil.test\n"), 0, "", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ss := NewSenderCheck("login_domain", tt.setSender, nil).Open(context.Background(), &filters.Conn{})
			m := &filters.Message{AuthUser: tt.user, Headers: tt.headers}
			v := ss.Data(context.Background(), m)
			if v.Code != tt.wantCode {
				t.Fatalf("verdict %+v, want code %d", v, tt.wantCode)
			}
			var stamp string
			for _, h := range v.Headers {
				stamp += h.Text
			}
			if stamp != tt.wantStamp {
				t.Errorf("stamped %q, want %q", stamp, tt.wantStamp)
			}
			for i, h := range m.Headers {
				if (h.Type == '*') != (i == tt.deleted) {
					t.Errorf("field %d %q deleted = %v", i, strings.TrimSpace(h.Text), h.Type == '*')
				}
			}
		})
	}
}

package mainlog

import (
	"net/netip"
	"testing"
)

func TestHost(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name, helo string
		ip         netip.Addr
		want       string
	}{
		{"mail.client.test", "client.test", ip, "mail.client.test (client.test) [192.0.2.1]"},
		{"mail.client.test", "MAIL.Client.test", ip, "mail.client.test [192.0.2.1]"},
		{"mail.client.test", "", ip, "mail.client.test [192.0.2.1]"},
		{"", "client.test", ip, "(client.test) [192.0.2.1]"},
		{"", "", ip, "[192.0.2.1]"},
		{"", "", netip.MustParseAddr("::ffff:192.0.2.1"), "[192.0.2.1]"},
		{"v6.test", "v6.test", netip.MustParseAddr("2001:db8::1"), "v6.test [2001:db8::1]"},
		{"", "", netip.Addr{}, "[]"},
	}
	for _, tt := range tests {
		if got := Host(tt.name, tt.helo, tt.ip); got != tt.want {
			t.Errorf("Host(%q, %q, %v) = %q, want %q", tt.name, tt.helo, tt.ip, got, tt.want)
		}
	}
}

package mainlog

import (
	"net/netip"
	"strings"
)

// Host is Exim's way of naming an SMTP client in a log line, the value of
// H=: "name (helo) [ip]", with the name the client's forward-confirmed
// reverse DNS name and helo its HELO/EHLO argument. Exim leaves out what
// is unknown, and the HELO name when it is the host name itself (case
// aside): "name [ip]", "(helo) [ip]", "[ip]".
func Host(name, helo string, ip netip.Addr) string {
	var b strings.Builder
	if name != "" {
		b.WriteString(name)
		b.WriteByte(' ')
	}
	if helo != "" && !strings.EqualFold(helo, name) {
		b.WriteString("(")
		b.WriteString(helo)
		b.WriteString(") ")
	}
	b.WriteByte('[')
	if ip.IsValid() {
		b.WriteString(ip.Unmap().String())
	}
	b.WriteByte(']')
	return b.String()
}

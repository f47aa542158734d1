package tlstest

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"testing"

	"mxgate/internal/peertest"
)

// ServeMTASTS serves policy as the MTA-STS policy file of host
// (https://host/.well-known/mta-sts.txt) on a free port of 127.0.0.1,
// with a certificate of ca for host, until the test ends; it returns the
// port. Every request gets the policy: what the client asked for is the
// client's test.
func ServeMTASTS(tb testing.TB, ca *CA, host, policy string) int {
	tb.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Certificate(tb, host)}})
	if err != nil {
		tb.Fatal(err)
	}
	peertest.Serve(tb, l, func(c net.Conn) {
		tp := textproto.NewConn(c)
		for {
			line, err := tp.ReadLine()
			if err != nil || line == "" {
				break
			}
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(policy), policy)
	})
	return l.Addr().(*net.TCPAddr).Port
}

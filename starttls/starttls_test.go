package starttls

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/textproto"
	"testing"
	"time"
)

// TestClientRefusals checks the two ways STARTTLS ends without TLS: a
// refusal leaves the connection usable (a *textproto.Error), clear-text
// data after the 220 loses it (a *HandshakeError) before any handshake.
func TestClientRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
		refused     bool
	}{
		{name: "refused", reply: "454 4.7.0 TLS not available\r\n", refused: true},
		{name: "clear text after 220", reply: "220 go ahead\r\n250 injected\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			go func() {
				defer server.Close()
				if line, err := bufio.NewReader(server).ReadString('\n'); err != nil || line != "STARTTLS\r\n" {
					t.Errorf("server read %q, %v", line, err)
					return
				}
				server.Write([]byte(tc.reply))
			}()
			_, err := Client(context.Background(), client, &tls.Config{InsecureSkipVerify: true}, 5*time.Second)
			var te *textproto.Error
			var he *HandshakeError
			switch {
			case tc.refused && !errors.As(err, &te):
				t.Errorf("err = %v, want a *textproto.Error", err)
			case !tc.refused && !errors.As(err, &he):
				t.Errorf("err = %v, want a *HandshakeError", err)
			}
		})
	}
}

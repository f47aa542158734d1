package spamd

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// TestPing: the real spamd answers PING with PONG; an error line is a
// *ServerError.
func TestPing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := Ping(ctx, startSpamd(t)); err != nil || got != "SPAMD/1.5 PONG" {
		t.Errorf("Ping(real spamd) = %q, %v; want SPAMD/1.5 PONG", got, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peertest.Serve(t, l, func(c net.Conn) {
		if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
			c.Write([]byte("SPAMD/1.5 76 Bad header line: PING\r\n"))
		}
	})
	var se *ServerError
	if _, err := Ping(ctx, l.Addr().String()); !errors.As(err, &se) || se.Code != 76 {
		t.Errorf("Ping(refusing spamd) error = %v, want a *ServerError 76", err)
	}
}

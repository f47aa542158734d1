package clamd

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestPing: the real clamd answers PONG; a server answering anything else
// is no clamd.
func TestPing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := Ping(ctx, startClamd(t)); err != nil || got != "PONG" {
		t.Errorf("Ping(real clamd) = %q, %v; want PONG", got, err)
	}
	other := fakeClamd(t, func(c net.Conn) {
		b := make([]byte, len("zPING\x00"))
		if _, err := io.ReadFull(c, b); err == nil {
			c.Write([]byte("UNKNOWN COMMAND\x00"))
		}
	})
	if _, err := Ping(ctx, other); !errors.Is(err, ErrBadReply) {
		t.Errorf("Ping(not clamd) error = %v, want ErrBadReply", err)
	}
}

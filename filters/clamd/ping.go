package clamd

import (
	"bytes"
	"context"
	"fmt"
)

// Ping sends clamd at addr ("host:port" or "unix:/path") its PING command
// and returns the answer, "PONG"; anything else is an error. ctx bounds
// it all, connect included.
func Ping(ctx context.Context, addr string) (string, error) {
	conn, err := (&Filter{}).dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return "", fmt.Errorf("clamd %s: %w", addr, err)
	}
	b, err := readReply(conn)
	if err != nil {
		return "", fmt.Errorf("clamd %s: %w", addr, err)
	}
	if reply := string(bytes.TrimRight(b, "\x00\n")); reply != "PONG" {
		return "", fmt.Errorf("clamd %s: %w %q to PING", addr, ErrBadReply, truncate(reply))
	}
	return "PONG", nil
}

package spamd

import (
	"bufio"
	"context"
	"fmt"
)

// Ping asks the spamd at addr ("host:port" or "unix:/path") whether it is
// there, as `spamc -K` does, and returns its answer, "SPAMD/1.5 PONG".
// ctx bounds it all, connect included.
func Ping(ctx context.Context, addr string) (string, error) {
	conn, err := (&Filter{}).dial(ctx, addr)
	if err != nil {
		return "", ctxErr(ctx, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if _, err := conn.Write([]byte("PING SPAMC/1.5\r\n\r\n")); err != nil {
		return "", ctxErr(ctx, err)
	}
	b, err := bufio.NewReader(conn).ReadSlice('\n')
	if err != nil {
		return "", ctxErr(ctx, fmt.Errorf("reading reply: %w", err))
	}
	line, _, _ := cutLine(b)
	proto, code, text, err := parseResponseLine(line)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", &ServerError{Code: code, Text: text}
	}
	return fmt.Sprintf("SPAMD/%s %s", proto, text), nil
}

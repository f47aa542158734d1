package rcptverify

import "context"

// PingDovecot connects to Dovecot's auth-userdb socket at path and
// exchanges the handshake every lookup starts with (VERSION 1). ctx bounds
// it.
func PingDovecot(ctx context.Context, path string) error {
	c, err := (&dovecotStore{path: path}).dial(ctx)
	if err != nil {
		return err
	}
	return c.Close()
}

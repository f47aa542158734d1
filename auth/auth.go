// Package auth owns SMTP AUTH's decisions: checking a login against a
// backend (Dovecot's auth-client socket or a passwd-file of crypt
// hashes), throttling failed logins per client IP and per user, and the
// sender policy of authenticated mail (a pipeline check). The SMTP
// exchange itself (SASL PLAIN and LOGIN, the replies) is the gateway's.
package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mxgate/config"
)

// Backend checks a user's password.
type Backend interface {
	// Check says whether pass is user's password. A nil error with ok
	// false is a refusal (535); an error is trouble with the backend
	// (454 4.7.0), which is not counted as a failed login.
	Check(ctx context.Context, user, pass string) (ok bool, err error)
	Close() error
}

// New opens the backend that o names; a passwd-file is read at once, so
// a missing or broken file is an error here.
func New(o config.Auth, panicLog func(string)) (Backend, error) {
	switch o.BackendKind {
	case "dovecot":
		return NewDovecot(o.BackendPath, time.Duration(o.Timeout)), nil
	case "passwd-file":
		return OpenPasswdFile(o.BackendPath, panicLog)
	}
	return nil, fmt.Errorf("auth: unknown backend %q", o.Backend)
}

// ErrBackend marks trouble with the backend rather than a wrong password.
var ErrBackend = errors.New("authentication backend failed")

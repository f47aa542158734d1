package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mxgate/mainlog"
)

// AUTH (RFC 4954) is offered on the submission and implicit TLS
// listeners when [auth] is set, and only under TLS: go-smtp answers AUTH
// on a plain connection with 538 5.7.11 and does not advertise it.

var (
	replyAuthFailed  = reply(535, [3]int{5, 7, 8}, "Authentication credentials invalid")
	replyAuthTemp    = reply(454, [3]int{4, 7, 0}, "Temporary authentication failure")
	replyAuthUnknown = reply(504, [3]int{5, 5, 4}, "Unrecognized authentication type")
	replyAuthNotHere = reply(503, [3]int{5, 5, 1}, "AUTH not available on this port")
)

// AuthMechanisms are what EHLO advertises: none where AUTH is not offered.
func (s *session) AuthMechanisms() []string {
	if !s.conn.mayAuth {
		return nil
	}
	return []string{"PLAIN", "LOGIN"}
}

// Auth starts the exchange of mech; the password is checked by login.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.conn.mayAuth {
		s.srv.trace.printf("AUTH %s: not offered on this listener", mech)
		return nil, replyAuthNotHere
	}
	s.mu.Lock()
	inTx := s.tx != nil
	s.mu.Unlock()
	if inTx {
		return nil, reply(503, [3]int{5, 5, 1}, "AUTH not permitted during a mail transaction")
	}
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				// Acting for another user is not offered.
				return s.login("plain", user, "\x00", true)
			}
			return s.login("plain", user, pass, false)
		}), nil
	case "LOGIN":
		return &loginServer{check: func(user, pass string) error { return s.login("login", user, pass, false) }}, nil
	}
	s.srv.trace.printf("AUTH %s: mechanism not offered", mech)
	return nil, replyAuthUnknown
}

// login checks user's password with the backend, under the failure
// throttle: a blocked client IP or user gets 421 and the connection
// closes; a failure waits auth.fail_delay, is logged as Exim logs it (the
// line fail2ban's exim filter reads) and answered 535.
func (s *session) login(mech, user, pass string, refuse bool) error {
	srv, cfg := s.srv, s.cfg().Auth
	ip := s.conn.ip.String()
	host := s.hostDesc(SafeHelo(s.c.Hostname()))
	if srv.throttle.Blocked(time.Now(), ip, user) {
		srv.trace.printf("AUTH %s: client [%s] or user %s blocked after %d failed logins (auth.max_failures)", mech, ip, user, cfg.MaxFailures)
		srv.log.Reject("", fmt.Sprintf("%s authenticator failed for %s: 421 too many failed logins (set_id=%s)", mech, host, logLogin(user)))
		s.conn.closeAfterWrite()
		return s.refusedAuth(user, "auth-blocked", "", reply(421, [3]int{4, 7, 0}, s.cfg().Hostname+" Too many failed logins, try again later"))
	}
	ok := false
	if !refuse {
		var err error
		ctx, cancel := context.WithTimeout(s.conn.ctx, time.Duration(cfg.Timeout))
		ok, err = srv.auth.Check(ctx, user, pass)
		cancel()
		if err != nil {
			srv.trace.printf("AUTH %s: backend failed: %v", mech, err)
			srv.log.Main("", fmt.Sprintf("%s authenticator temporarily failed for %s: %v (set_id=%s)", mech, host, err, logLogin(user)))
			return s.refusedAuth(user, "auth-backend-failed", err.Error(), replyAuthTemp)
		}
	}
	if !ok {
		srv.throttle.Fail(time.Now(), ip, user)
		if d := time.Duration(cfg.FailDelay); d > 0 && srv.trace == nil {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-s.conn.ctx.Done():
				t.Stop()
			}
		}
		srv.trace.printf("AUTH %s: login %s refused by %s", mech, user, cfg.Backend)
		srv.log.Reject("", fmt.Sprintf("%s authenticator failed for %s: 535 Incorrect authentication data (set_id=%s)", mech, host, logLogin(user)))
		return s.refusedAuth(user, "auth-failed", "", replyAuthFailed)
	}
	s.conn.mu.Lock()
	s.conn.authUser, s.conn.authMech = user, mech
	s.conn.mu.Unlock()
	srv.trace.printf("AUTH %s: authenticated as %s", mech, user)
	return nil
}

// logLogin is a login as the logs write it: escaped (mainlog.Escape), a
// space too, so set_id= and A= stay one field, and at most 255 bytes.
func logLogin(u string) string {
	if len(u) > 255 {
		u = u[:255]
	}
	return strings.ReplaceAll(mainlog.Escape(u), " ", `\x20`)
}

// authState is the client's login, "" before AUTH.
func (c *conn) authState() (user, mech string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.authUser, c.authMech
}

// loginServer is SASL LOGIN (draft-murchison-sasl-login), which go-sasl
// offers only as a client: "Username:", then "Password:", each answered
// in base64, the initial response standing for the user name.
type loginServer struct {
	check func(user, pass string) error
	user  string
	state int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.state {
	case 0:
		l.state = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.user = string(response)
		l.state = 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, false, errors.New("unexpected client response")
}

var _ smtp.AuthSession = (*session)(nil)

package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mxgate/internal/tlstest"
)

// authBackend is a fakeBackend whose server offers AUTH with mechs and
// knows one user.
type authBackend struct {
	*fakeBackend
	mechs []string
	user  string
	pass  string

	mu     sync.Mutex
	logins []string // "MECH user" of each successful login
}

func (b *authBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s, _ := b.fakeBackend.NewSession(c)
	return &authSession{fakeSession: s.(*fakeSession), b: b}, nil
}

type authSession struct {
	*fakeSession
	b *authBackend
}

func (s *authSession) AuthMechanisms() []string { return s.b.mechs }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != s.b.user || pass != s.b.pass {
			return smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
		}
		s.b.mu.Lock()
		s.b.logins = append(s.b.logins, mech+" "+user)
		s.b.mu.Unlock()
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, errors.New("unsupported mechanism")
}

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if len(resp) > 0 {
			l.user, l.step = string(resp), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

func (b *authBackend) loggedIn() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logins...)
}

// The smarthost: AUTH over TLS (STARTTLS or smtps), never in clear text; a
// refused login defers.
func TestSmarthost(t *testing.T) {
	cert := tlstest.Certificate(t, "relay.example.test", "127.0.0.1")
	startTLS := func(s *smtp.Server) { s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} }
	const ok = "250 2.0.0 OK: queued"
	tests := []struct {
		name     string
		smtps    bool
		server   func(*smtp.Server)
		mechs    []string
		user     string
		pass     string
		startTLS string
		want     Result
		logins   string
		notWire  string
	}{
		{name: "AUTH PLAIN after STARTTLS", server: startTLS, mechs: []string{"PLAIN", "LOGIN"}, user: "relay", pass: "secret",
			want: Result{Status: Delivered, Reply: ok}, logins: "PLAIN relay"},
		{name: "AUTH LOGIN when only LOGIN is offered", server: startTLS, mechs: []string{"LOGIN"}, user: "relay", pass: "secret",
			want: Result{Status: Delivered, Reply: ok}, logins: "LOGIN relay"},
		{name: "smtps: TLS from the first byte", smtps: true, mechs: []string{"PLAIN"}, user: "relay", pass: "secret",
			want: Result{Status: Delivered, Reply: ok}, logins: "PLAIN relay"},
		{name: "wrong password defers", server: startTLS, mechs: []string{"PLAIN"}, user: "relay", pass: "wrong",
			want: Result{Status: Deferred, Reason: AuthFailed, Reply: "535 5.7.8 Authentication credentials invalid",
				Err: "SMTP error from remote mail server after AUTH PLAIN: 535 5.7.8 Authentication credentials invalid"},
			notWire: "MAIL FROM"},
		{name: "no mechanism we speak", server: startTLS, mechs: []string{"CRAM-MD5"}, user: "relay", pass: "secret",
			want:    Result{Status: Deferred, Reason: AuthFailed, Err: "AUTH is configured, but the server offers neither AUTH PLAIN nor AUTH LOGIN"},
			notWire: "AUTH"},
		{name: "never in clear text", startTLS: "opportunistic", mechs: []string{"PLAIN"}, user: "relay", pass: "secret",
			want:    Result{Status: Deferred, Reason: AuthFailed, Err: "AUTH is configured, but the session is not encrypted: the password is not sent in clear text"},
			notWire: "AUTH"},
		{name: "required TLS not offered", mechs: []string{"PLAIN"}, user: "relay", pass: "secret",
			want:    Result{Status: Deferred, Reason: TLSRequired, Err: "a TLS session is required, but the server did not offer TLS support"},
			notWire: "AUTH"},
		{name: "no AUTH configured", server: startTLS, want: Result{Status: Delivered, Reply: ok}, notWire: "AUTH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := &authBackend{fakeBackend: &fakeBackend{}, mechs: tt.mechs, user: "relay", pass: "secret"}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			scheme, server := "smtp", tt.server
			if tt.smtps {
				// The wire log sits above TLS, where go-smtp cannot see
				// the session is encrypted: allow AUTH; a clear-text
				// client would fail the handshake anyway.
				scheme = "smtps"
				l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
				server = func(s *smtp.Server) { s.AllowInsecureAuth = true }
			}
			_, wire := serveSMTPBackend(t, l, be, server)
			o := testOptions()
			o.StartTLS = "required"
			if tt.startTLS != "" {
				o.StartTLS = tt.startTLS
			}
			o.AuthUser, o.AuthPassword = tt.user, tt.pass
			tr := newTransport(t, scheme+"://"+l.Addr().String(), o)
			got := tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@outside.test"))
			want := tt.want
			want.Rcpt, want.Host = "a@outside.test", host
			checkResults(t, got, []Result{want})
			if logins := strings.Join(be.loggedIn(), ","); logins != tt.logins {
				t.Errorf("logins %q, want %q", logins, tt.logins)
			}
			if tt.notWire != "" && strings.Contains(wire.String(), tt.notWire) {
				t.Errorf("wire has %q:\n%s", tt.notWire, wire.String())
			}
			if tt.want.Status == Delivered && len(be.received()) != 1 {
				t.Errorf("server received %d messages, want 1", len(be.received()))
			}
		})
	}
}

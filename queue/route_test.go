package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/deliver"
	"mxgate/dsn"
	"mxgate/route"
	"mxgate/spool"
)

// routes is a router with every kind of destination: [downstream] for
// down.test and up.test, a partner route for partner.test (not a relay
// domain), and outbound through smart (nil: outbound "none").
func routes(down, partner, smart deliver.Transport) *route.Router {
	o := route.Options{
		RelayDomains: []string{"down.test", "up.test"},
		Default:      route.StoreRoute{Name: "downstream", Transport: down, OverQuota: "defer"},
		Routes:       []route.StoreRoute{{Name: "partner", Domains: []string{"partner.test"}, Transport: partner, OverQuota: "defer"}},
		Outbound:     route.OutboundRoute{Mode: "none"},
	}
	if smart != nil {
		o.Outbound = route.OutboundRoute{Mode: "smarthost", Transport: smart}
	}
	return route.New(o)
}

// One attempt hands each route its own recipients, once, and logs each
// delivery with its router and transport.
func TestRouteGroups(t *testing.T) {
	down, partner, smart := &fakeTransport{name: "lmtp"}, &fakeTransport{name: "maildir"}, &fakeTransport{name: "smtp"}
	e := newEnv(t, nil, Options{Router: routes(down, partner, smart)})
	id := e.submit([]string{"bob@down.test", "p@partner.test", "x@foreign.test", "carol@Down.TEST", "y@foreign.test"}, nil)
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s => bob@down.test R=downstream T=lmtp H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s -> carol@Down.TEST R=downstream T=lmtp H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s => p@partner.test R=partner T=maildir H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s => x@foreign.test R=smarthost T=smtp H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s -> y@foreign.test R=smarthost T=smtp H=%s %s", id, testHost, testC),
		string(id)+" Completed",
		"End queue run: pid=PID",
	)
	for _, c := range []struct {
		tr   *fakeTransport
		want []string
	}{
		{down, []string{"bob@down.test", "carol@Down.TEST"}},
		{partner, []string{"p@partner.test"}},
		{smart, []string{"x@foreign.test", "y@foreign.test"}},
	} {
		if got := c.tr.Calls(); len(got) != 1 || !slices.Equal(got[0], c.want) {
			t.Errorf("transport %s got calls %v, want one with %v", c.tr.name, got, c.want)
		}
	}
}

// With outbound "none", ordinary mail to a foreign domain fails as
// Exim's "Unrouteable address" and is bounced; the store never sees it.
func TestUnroutableBounced(t *testing.T) {
	down := &fakeTransport{}
	e := newEnv(t, nil, Options{Hostname: hostname, Router: routes(down, &fakeTransport{}, nil)})
	id := e.submit([]string{"bob@down.test", "x@foreign.test"}, nil)
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	b := e.bounce(id, "x@foreign.test")
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s => bob@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s ** x@foreign.test: Unrouteable address", id),
		fmt.Sprintf("%s <= <> R=%s U=%s P=local S=%d", b, id, dsn.User(), e.size(b)),
		string(id)+" Completed",
		"End queue run: pid=PID",
	)
	if got := down.Calls(); len(got) != 1 || !slices.Equal(got[0], []string{"bob@down.test"}) {
		t.Errorf("downstream got %v, want only bob@down.test", got)
	}
	if r := e.readReport(b); !strings.Contains(r.text, "Unrouteable address") {
		t.Errorf("bounce text lacks the reason:\n%s", r.text)
	}
}

// A bounce to a foreign domain with outbound "none" is frozen, with a
// line that says which address and why; nothing is sent anywhere.
func TestUnroutableBounceFrozen(t *testing.T) {
	down := &fakeTransport{}
	e := newEnv(t, nil, Options{Router: routes(down, &fakeTransport{}, nil)})
	id := e.submit([]string{"x@foreign.test"}, func(ev *spool.Envelope) { ev.Sender = "" })
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf(`%s ** x@foreign.test: Unrouteable address: foreign.test is not a relay domain and outbound.mode is "none": nothing sends mail there`, id),
		string(id)+" Frozen (delivery error message)",
		"End queue run: pid=PID",
	)
	if ev := e.load(id); ev.Frozen.IsZero() || !slices.Equal(ev.Pending(), []string{"x@foreign.test"}) {
		t.Errorf("frozen %v pending %v, want frozen with x@foreign.test pending", ev.Frozen, ev.Pending())
	}
	if got := down.Calls(); len(got) != 0 {
		t.Errorf("downstream got %v, want nothing", got)
	}
	if got := e.notifications(); len(got) != 1 {
		t.Errorf("spool holds %v, want only the frozen bounce", got)
	}
}

// quotaStore is an in-process SMTP or LMTP store that refuses
// "full552@" with 552 5.2.2 and "full452@" with 452 4.2.2 (at RCPT for
// SMTP, after the dot for LMTP, as Dovecot does) and accepts the rest.
type quotaStore struct{ lmtp bool }

func (q quotaStore) NewSession(*smtp.Conn) (smtp.Session, error) { return &quotaSession{q: q}, nil }

type quotaSession struct {
	q     quotaStore
	rcpts []string
}

var quotaReplies = map[string]*smtp.SMTPError{
	"full552": {Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"},
	"full452": {Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"},
}

func (s *quotaSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *quotaSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	local, _, _ := strings.Cut(to, "@")
	if err := quotaReplies[local]; err != nil && !s.q.lmtp {
		return err
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *quotaSession) Data(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
func (s *quotaSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	for _, to := range s.rcpts {
		local, _, _ := strings.Cut(to, "@")
		if err := quotaReplies[local]; err != nil {
			st.SetStatus(to, err)
		} else {
			st.SetStatus(to, nil)
		}
	}
	return nil
}
func (s *quotaSession) Reset()        { s.rcpts = nil }
func (s *quotaSession) Logout() error { return nil }

// startQuotaStore serves a quotaStore on a loopback port until the test
// ends and returns the transport that delivers to it.
func startQuotaStore(t *testing.T, lmtp bool) deliver.Transport {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(quotaStore{lmtp: lmtp})
	srv.LMTP = lmtp
	srv.Domain = "store.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("quota store: %v", err)
		}
	})
	scheme := "smtp"
	if lmtp {
		scheme = "lmtp"
	}
	a := l.Addr().(*net.TCPAddr)
	tr, err := deliver.New(deliver.Target{Scheme: scheme, Host: "127.0.0.1", Port: a.Port}, deliver.Options{
		Hostname: "mx.example.test", ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second,
		DataTimeout: 5 * time.Second, StartTLS: "none",
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// A mailbox-full answer follows the store's over_quota: "defer" retries
// (even a 552), "bounce" fails and bounces (even a 452), "discard" drops
// the recipient with Exim's blackhole line and the store's reply.
func TestOverQuota(t *testing.T) {
	tests := []struct {
		policy, local string
		lmtp          bool
		line          string // the recipient's mainlog line, after the ID; HOST and T are filled in
		pending       bool
		bounced       bool
	}{
		{"defer", "full552", false, "== full552@down.test R=downstream T=T defer (-22) H=HOST: SMTP error from remote mail server after RCPT TO:<full552@down.test>: 552 5.2.2 Mailbox full", true, false},
		{"defer", "full452", true, "== full452@down.test R=downstream T=T defer (-22) H=HOST: LMTP error from remote mail server after end of data: 452 4.2.2 <full452@down.test> Mailbox full", true, false},
		{"bounce", "full452", false, "** full452@down.test R=downstream T=T H=HOST: SMTP error from remote mail server after RCPT TO:<full452@down.test>: 452 4.2.2 Mailbox full", false, true},
		{"bounce", "full552", true, "** full552@down.test R=downstream T=T H=HOST: LMTP error from remote mail server after end of data: 552 5.2.2 <full552@down.test> Mailbox full", false, true},
		{"discard", "full552", false, `=> :blackhole: <full552@down.test> R=downstream C="552 5.2.2 Mailbox full"`, false, false},
		{"discard", "full452", true, `=> :blackhole: <full452@down.test> R=downstream C="452 4.2.2 <full452@down.test> Mailbox full"`, false, false},
	}
	for _, tt := range tests {
		proto := "SMTP"
		if tt.lmtp {
			proto = "LMTP"
		}
		t.Run(tt.policy+" "+tt.local+" "+proto, func(t *testing.T) {
			tr := startQuotaStore(t, tt.lmtp)
			r := route.New(route.Options{
				RelayDomains: []string{"down.test", "up.test"},
				Default:      route.StoreRoute{Name: "downstream", Transport: tr, OverQuota: tt.policy},
			})
			e := newEnv(t, nil, Options{Hostname: hostname, Router: r})
			rcpt := tt.local + "@down.test"
			id := e.submit([]string{rcpt}, nil)
			e.newLines()
			e.r.RunOnce(context.Background(), false, false)
			lines := e.newLines()
			want := string(id) + " " + strings.NewReplacer("T=T", "T="+tr.Name(), "HOST", "127.0.0.1 [127.0.0.1]").Replace(tt.line)
			if len(lines) < 2 || lines[1] != want {
				t.Fatalf("mainlog:\n  %s\nwant line 2:\n  %s", strings.Join(lines, "\n  "), want)
			}
			if tt.pending {
				if ev := e.load(id); !slices.Equal(ev.Pending(), []string{rcpt}) {
					t.Errorf("pending %v, want %s", ev.Pending(), rcpt)
				}
			} else if got := e.spoolFiles(id); len(got) != 0 {
				t.Errorf("spool still holds %v", got)
			}
			if tt.bounced {
				e.bounce(id, rcpt)
			} else if n := len(e.notifications()); n != 0 && !tt.pending {
				t.Errorf("%d notifications in the spool, want none", n)
			}
		})
	}
}

// A bounce names the host of an outbound route (an MX or the smarthost,
// on the Internet), never a store's; and a remote 552 5.2.2 on outbound
// mail bounces at once: over_quota is a store's policy, not the world's.
func TestBounceOutboundHostAndQuota(t *testing.T) {
	full := deliver.Result{Status: deliver.Failed, Reason: deliver.OverQuota, Host: testHost,
		Reply: "552 5.2.2 mailbox full", Err: "SMTP error from remote mail server after RCPT TO: 552 5.2.2 mailbox full"}
	smart := &fakeTransport{name: "smtp", outcome: map[string]deliver.Result{"x@foreign.test": full}}
	e := newEnv(t, nil, Options{Router: routes(&fakeTransport{name: "lmtp"}, &fakeTransport{name: "maildir"}, smart)})
	id := e.submit([]string{"x@foreign.test"}, nil)
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	b := e.bounce(id, "x@foreign.test")
	r := e.readReport(b)
	for _, want := range []string{"Remote-MTA: dns; mx.down.test\n", "Status: 5.2.2\n"} {
		if !strings.Contains(r.status, want) {
			t.Errorf("delivery status lacks %q:\n%s", want, r.status)
		}
	}
}

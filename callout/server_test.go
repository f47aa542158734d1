package callout

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
)

// zone is what the test DNS server knows (a dnstest.Zone): "name. TYPE"
// → records. A name with no records of any type is NXDOMAIN; a known name
// without the asked type is NODATA.
type zone map[string][]string

func testZone() zone {
	return zone{
		"known.test. MX":          {"known.test. 60 IN MX 10 mx.known.test."},
		"mx.known.test. A":        {"mx.known.test. 60 IN A 127.0.0.1"},
		"failover.test. MX":       {"failover.test. 60 IN MX 5 gone.failover.test.", "failover.test. 60 IN MX 10 mx.known.test."},
		"nomx.test. A":            {"nomx.test. 60 IN A 127.0.0.1"},
		"null.test. MX":           {"null.test. 60 IN MX 0 ."},
		"nothing.test. TXT":       {"nothing.test. 60 IN TXT \"no mail here\""},
		"pmless.test. MX":         {"pmless.test. 60 IN MX 10 mx.known.test."},
		"other.test. MX":          {"other.test. 60 IN MX 10 mx.known.test."},
		"servfail.test. SERVFAIL": nil,
	}
}

// startDNS serves z until the test ends.
func startDNS(t testing.TB, z zone) string {
	t.Helper()
	return dnstest.StartZone(t, dnstest.Zone(z)).Addr
}

// kind is how a test SMTP server answers RCPT.
type kind int

const (
	strict    kind = iota // known recipients 250, others 550 5.1.1
	acceptAll             // every recipient 250
	tempfail              // every recipient 451 4.3.0
	noBounces             // MAIL FROM:<> refused 550 5.7.1
)

// mta is a go-smtp server on 127.0.0.1 that records what probes ask.
type mta struct {
	port  int
	kind  kind
	users map[string]bool

	mu    sync.Mutex
	rcpts []string
	mails []string
	helos []string
	data  int
	// active counts RCPTs being answered right now, maxActive the most at
	// once: a probe holds its host slot from connect until after the RCPT
	// reply, so this never lags the client the way counting connections
	// (closed only after QUIT's reply) would.
	active    int
	maxActive int
	hold      time.Duration // how long each RCPT takes to answer
	gate      chan struct{} // when set, RCPT waits until it is closed
}

func startMTA(t testing.TB, k kind, users ...string) *mta {
	t.Helper()
	m := &mta{kind: k, users: make(map[string]bool)}
	for _, u := range users {
		m.users[u] = true
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.port = l.Addr().(*net.TCPAddr).Port
	s := smtp.NewServer(m)
	s.Domain = "mx.known.test"
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = nopLogger{}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return m
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

func (m *mta) NewSession(c *smtp.Conn) (smtp.Session, error) {
	m.mu.Lock()
	m.helos = append(m.helos, c.Hostname())
	m.mu.Unlock()
	return &mtaSession{m: m}, nil
}

func (m *mta) counts() (rcpts []string, sessions int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.rcpts...), len(m.helos)
}

type mtaSession struct{ m *mta }

func (s *mtaSession) Mail(from string, _ *smtp.MailOptions) error {
	s.m.mu.Lock()
	s.m.mails = append(s.m.mails, from)
	s.m.mu.Unlock()
	if s.m.kind == noBounces && from == "" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "we do not accept bounces"}
	}
	return nil
}

func (s *mtaSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.mu.Lock()
	s.m.rcpts = append(s.m.rcpts, to)
	gate, hold := s.m.gate, s.m.hold
	s.m.active++
	s.m.maxActive = max(s.m.maxActive, s.m.active)
	s.m.mu.Unlock()
	defer func() {
		s.m.mu.Lock()
		s.m.active--
		s.m.mu.Unlock()
	}()
	if gate != nil {
		<-gate
	}
	time.Sleep(hold)
	switch {
	case s.m.kind == tempfail:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	case s.m.kind == acceptAll, s.m.users[to]:
		return nil
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user"}
}

func (s *mtaSession) Data(r io.Reader) error {
	s.m.mu.Lock()
	s.m.data++
	s.m.mu.Unlock()
	_, err := io.Copy(io.Discard, r)
	return err
}

func (s *mtaSession) Reset() {}

func (s *mtaSession) Logout() error { return nil }

// startSilent accepts connections and never says a word, until the test
// ends.
func startSilent(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peertest.Silent(t, l)
	return l.Addr().(*net.TCPAddr).Port
}

// closedPort is a loopback port nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	return port
}

func netipAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	ip, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

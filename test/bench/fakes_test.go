package bench

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
)

// The peers of the benchmark: small in-process fakes on 127.0.0.1, each
// answering the one thing a clean message needs, and counting what it was
// asked, so a run can prove every check really took part (a check that
// was left out of the wiring would make the gateway look faster).

// peerDeadline bounds every exchange with a fake.
const peerDeadline = 10 * time.Second

// zone is what the fake resolver knows about one name: MX targets and
// IPv4 addresses. A name it knows answers NOERROR (empty for other types);
// every other name is NXDOMAIN, which is how a DNS list says "not listed".
type zone struct {
	mx []string // host names, preference 10
	a  []string
}

// fakeDNS is a resolver on 127.0.0.1 (internal/dnstest) answering from a
// table.
type fakeDNS struct {
	addr string
	srv  *dnstest.Server
}

func startDNS(tb testing.TB, zones map[string]zone) *fakeDNS {
	tb.Helper()
	srv := dnstest.Start(tb, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		z, ok := zones[strings.TrimSuffix(strings.ToLower(q.Name), ".")]
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 3600}
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeMX:
			for _, h := range z.mx {
				m.Answer = append(m.Answer, &dns.MX{Hdr: hdr, Preference: 10, Mx: dns.Fqdn(h)})
			}
		case q.Qtype == dns.TypeA:
			for _, a := range z.a {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(a)})
			}
		}
		return m
	})
	return &fakeDNS{addr: srv.Addr, srv: srv}
}

// questions returns how many questions of type qtype ("A", "MX") were
// asked for names ending in suffix.
func (f *fakeDNS) questions(suffix, qtype string) int {
	n := 0
	for _, q := range f.srv.Asked() {
		name, t, _ := strings.Cut(strings.TrimPrefix(q, "tcp "), " ")
		if t == qtype && strings.HasSuffix(strings.TrimSuffix(name, "."), suffix) {
			n++
		}
	}
	return n
}

// fakeMX is the sender domain's mail server, probed by the callout: it
// accepts every sender and recipient and counts the RCPTs.
type fakeMX struct {
	port  int
	rcpts atomic.Int64
}

func startMX(tb testing.TB) *fakeMX {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &fakeMX{port: ln.Addr().(*net.TCPAddr).Port}
	srv := smtp.NewServer(f)
	srv.Domain = "mx.sender.test"
	srv.ReadTimeout, srv.WriteTimeout = peerDeadline, peerDeadline
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		srv.Close()
		<-served
	})
	return f
}

func (f *fakeMX) NewSession(*smtp.Conn) (smtp.Session, error) { return mxSession{f}, nil }

type mxSession struct{ f *fakeMX }

func (mxSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s mxSession) Rcpt(string, *smtp.RcptOptions) error {
	s.f.rcpts.Add(1)
	return nil
}
func (mxSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (mxSession) Reset()        {}
func (mxSession) Logout() error { return nil }

// scanner is a fake content scanner on 127.0.0.1: on each connection it
// reads one request with read, counts it, and answers reply.
type scanner struct {
	addr     string
	requests atomic.Int64
}

func startScanner(tb testing.TB, read func(io.Reader) error, reply string) *scanner {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &scanner{addr: ln.Addr().String()}
	peertest.Serve(tb, ln, func(c net.Conn) {
		if read(c) == nil {
			s.requests.Add(1) // before the reply: the client may hang up once it has it
			io.WriteString(c, reply)
		}
	})
	return s
}

// spamdReply is spamd's answer to SPAMC/1.5 REPORT for a clean message,
// with an empty report; spamc reads it to the end of the connection.
const spamdReply = "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 1.0 / 5.0\r\n\r\n"

// readReport reads a REPORT request up to the client's half-close.
func readReport(r io.Reader) error {
	req, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(req), "REPORT SPAMC/1.5\r\n") {
		return errors.New("not a SPAMC/1.5 REPORT request")
	}
	return nil
}

// clamdReply is clamd's answer to INSTREAM for a clean stream.
const clamdReply = "stream: OK\x00"

// readInstream reads one INSTREAM request: the command, then chunks each
// after its 4-byte big-endian length, up to a zero length.
func readInstream(r io.Reader) error {
	cmd := make([]byte, len("zINSTREAM\x00"))
	if _, err := io.ReadFull(r, cmd); err != nil {
		return err
	}
	if string(cmd) != "zINSTREAM\x00" {
		return errors.New("not INSTREAM: " + string(cmd))
	}
	for {
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return err
		}
	}
}

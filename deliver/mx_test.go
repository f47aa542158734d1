package deliver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
)

// mxNet is a test's Internet on loopback: mail hosts on 127.0.0.N, all on
// one port as MX hosts are, and a fake DNS server for their zones.
type mxNet struct {
	t    *testing.T
	port int
	// held are the port's listeners on 127.0.0.1-127.0.0.9, bound at
	// the start (a port free on 127.0.0.1 may be taken on 127.0.0.2 by
	// another test by the time a host is started there) and closed by
	// transport when they serve no host.
	held map[string]net.Listener
}

// mxHosts is how many loopback addresses, from 127.0.0.1 on, a test's
// mail hosts may use.
const mxHosts = 9

func newMXNet(t *testing.T) *mxNet {
	t.Helper()
	for range 100 {
		n := &mxNet{t: t, port: peertest.FreePort(t, false), held: make(map[string]net.Listener)}
		for i := 1; i <= mxHosts; i++ {
			ip := fmt.Sprintf("127.0.0.%d", i)
			l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(n.port)))
			if err != nil {
				break
			}
			n.held[ip] = l
		}
		if len(n.held) == mxHosts {
			t.Cleanup(func() {
				for _, l := range n.held {
					l.Close()
				}
			})
			return n
		}
		for _, l := range n.held {
			l.Close()
		}
	}
	t.Fatalf("no port free on 127.0.0.1-127.0.0.%d in 100 tries", mxHosts)
	return nil
}

// listen is the host ip's listener on the net's port.
func (n *mxNet) listen(ip string) net.Listener {
	n.t.Helper()
	l, ok := n.held[ip]
	if !ok {
		n.t.Fatalf("mxNet: no listener held for %s (127.0.0.1-127.0.0.%d)", ip, mxHosts)
	}
	delete(n.held, ip)
	return l
}

// server runs a go-smtp mail host on ip.
func (n *mxNet) server(ip string, be *fakeBackend, setup func(*smtp.Server)) *wireLog {
	n.t.Helper()
	_, wl := serveSMTP(n.t, n.listen(ip), be, setup)
	return wl
}

// dns serves zone; names in secure are answered with the AD bit, as a
// validating resolver answers for a signed zone.
func (n *mxNet) dns(zone dnstest.Zone, secure ...string) *dnstest.Server {
	n.t.Helper()
	h := zone.Handler(n.t)
	return dnstest.Start(n.t, func(q dns.Question, tcp bool) *dns.Msg {
		m := h(q, tcp)
		for _, s := range secure {
			if m != nil && strings.EqualFold(q.Name, dns.Fqdn(s)) {
				m.AuthenticatedData = true
			}
		}
		return m
	})
}

// transport is the MX transport asking srv, with its test timeouts.
func (n *mxNet) transport(srv *dnstest.Server, change func(*MXOptions)) Transport {
	n.t.Helper()
	// The hosts are up: the addresses with none refuse connections, as
	// an MX host that is down does.
	for ip, l := range n.held {
		l.Close()
		delete(n.held, ip)
	}
	o := MXOptions{
		Hostname:       "gw.example.net",
		Resolvers:      []string{srv.Addr},
		Port:           n.port,
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 3 * time.Second,
		DataTimeout:    3 * time.Second,
		MTASTS:         "off",
	}
	if change != nil {
		change(&o)
	}
	tr, err := NewMX(o)
	if err != nil {
		n.t.Fatal(err)
	}
	return tr
}

// The routing decisions: which host gets the message, or why none does.
func TestMXRouting(t *testing.T) {
	const ok = "250 2.0.0 OK: queued"
	greet := func(reply string) scriptFunc {
		return func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
			tp.PrintfLine("%s", reply)
			tp.ReadLine()
			tp.PrintfLine("221 bye")
		}
	}
	tests := []struct {
		name     string
		zone     dnstest.Zone
		servers  map[string]*fakeBackend // by IP: a mail host
		scripted map[string]scriptFunc   // by IP: a misbehaving one
		rcpts    []string
		want     []Result
		got      map[string]int // messages each server must have received
	}{{
		name: "lowest preference first",
		zone: dnstest.Zone{
			"example.test. MX":    {"example.test. 60 IN MX 20 mx2.example.test.", "example.test. 60 IN MX 10 mx1.example.test."},
			"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
			"mx2.example.test. A": {"mx2.example.test. 60 IN A 127.0.0.3"},
		},
		servers: map[string]*fakeBackend{"127.0.0.2": {}, "127.0.0.3": {}},
		rcpts:   []string{"a@example.test"},
		want:    []Result{{Rcpt: "a@example.test", Status: Delivered, Host: "mx1.example.test [127.0.0.2]", Reply: ok}},
		got:     map[string]int{"127.0.0.2": 1, "127.0.0.3": 0},
	}, {
		name: "first MX refuses the connection: the next",
		zone: dnstest.Zone{
			"example.test. MX":    {"example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test."},
			"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
			"mx2.example.test. A": {"mx2.example.test. 60 IN A 127.0.0.3"},
		},
		servers: map[string]*fakeBackend{"127.0.0.3": {}},
		rcpts:   []string{"a@example.test"},
		want:    []Result{{Rcpt: "a@example.test", Status: Delivered, Host: "mx2.example.test [127.0.0.3]", Reply: ok}},
	}, {
		name: "4xx greeting: the next host",
		zone: dnstest.Zone{
			"example.test. MX":    {"example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test."},
			"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
			"mx2.example.test. A": {"mx2.example.test. 60 IN A 127.0.0.3"},
		},
		scripted: map[string]scriptFunc{"127.0.0.2": greet("421 4.3.2 mx1 busy")},
		servers:  map[string]*fakeBackend{"127.0.0.3": {}},
		rcpts:    []string{"a@example.test"},
		want:     []Result{{Rcpt: "a@example.test", Status: Delivered, Host: "mx2.example.test [127.0.0.3]", Reply: ok}},
	}, {
		name: "every host fails: the last one's error",
		zone: dnstest.Zone{
			"example.test. MX":    {"example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test."},
			"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
			"mx2.example.test. A": {"mx2.example.test. 60 IN A 127.0.0.3"},
		},
		scripted: map[string]scriptFunc{"127.0.0.2": greet("421 4.3.2 mx1 busy")},
		rcpts:    []string{"a@example.test"},
		want:     []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: Refused, Host: "mx2.example.test [127.0.0.3]", Err: "Connection refused"}},
	}, {
		name: "RCPT replies are final for the recipient: no next host",
		zone: dnstest.Zone{
			"example.test. MX":    {"example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test."},
			"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
			"mx2.example.test. A": {"mx2.example.test. 60 IN A 127.0.0.3"},
		},
		servers: map[string]*fakeBackend{
			"127.0.0.2": {rcptErr: map[string]error{
				"gone@example.test": smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "No such user"),
				"grey@example.test": smtpErr(450, smtp.EnhancedCode{4, 7, 1}, "Greylisted"),
			}},
			"127.0.0.3": {},
		},
		rcpts: []string{"gone@example.test", "grey@example.test", "ok@example.test"},
		want: []Result{
			{Rcpt: "gone@example.test", Status: Failed, Reason: RemotePerm, Host: "mx1.example.test [127.0.0.2]", Reply: "550 5.1.1 No such user",
				Err: "SMTP error from remote mail server after RCPT TO:<gone@example.test>: 550 5.1.1 No such user"},
			{Rcpt: "grey@example.test", Status: Deferred, Reason: RemoteTemp, Host: "mx1.example.test [127.0.0.2]", Reply: "450 4.7.1 Greylisted",
				Err: "SMTP error from remote mail server after RCPT TO:<grey@example.test>: 450 4.7.1 Greylisted"},
			{Rcpt: "ok@example.test", Status: Delivered, Host: "mx1.example.test [127.0.0.2]", Reply: ok},
		},
		got: map[string]int{"127.0.0.2": 1, "127.0.0.3": 0},
	}, {
		name: "no MX: the domain's own address",
		zone: dnstest.Zone{
			"example.test. A": {"example.test. 60 IN A 127.0.0.2"},
		},
		servers: map[string]*fakeBackend{"127.0.0.2": {}},
		rcpts:   []string{"a@example.test"},
		want:    []Result{{Rcpt: "a@example.test", Status: Delivered, Host: "example.test [127.0.0.2]", Reply: ok}},
	}, {
		name:    "null MX fails",
		zone:    dnstest.Zone{"example.test. MX": {"example.test. 60 IN MX 0 ."}, "example.test. A": {"example.test. 60 IN A 127.0.0.2"}},
		servers: map[string]*fakeBackend{"127.0.0.2": {}},
		rcpts:   []string{"a@example.test"},
		want: []Result{{Rcpt: "a@example.test", Status: Failed, Reason: Unroutable,
			Err: "domain example.test accepts no mail (null MX): 556 5.1.10 Recipient address has null MX"}},
		got: map[string]int{"127.0.0.2": 0},
	}, {
		name:  "NXDOMAIN fails",
		zone:  dnstest.Zone{"other.test. A": {"other.test. 60 IN A 127.0.0.2"}},
		rcpts: []string{"a@example.test"},
		want:  []Result{{Rcpt: "a@example.test", Status: Failed, Reason: Unroutable, Err: "domain example.test does not exist (DNS: NXDOMAIN)"}},
	}, {
		name:  "SERVFAIL defers, naming no resolver",
		zone:  dnstest.Zone{"example.test. SERVFAIL": nil},
		rcpts: []string{"a@example.test"},
		want: []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: ConnectFailed,
			Err: "DNS lookup of the MX hosts of example.test failed: answer code SERVFAIL"}},
	}, {
		name: "MX hosts without a usable address defer",
		zone: dnstest.Zone{
			"example.test. MX":      {"example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.", "example.test. 60 IN MX 30 mx3.example.test."},
			"mx1.example.test. A":   {"mx1.example.test. 60 IN A 0.0.0.0"},
			"mx2.example.test. TXT": {`mx2.example.test. 60 IN TXT "no address"`},
		},
		rcpts: []string{"a@example.test"},
		want: []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: Unroutable,
			Err: "no MX host of example.test has a usable address: mx1.example.test: no usable address (0.0.0.0); mx2.example.test: no address; mx3.example.test: no such host"}},
	}, {
		name: "two domains, one session each, results in order",
		zone: dnstest.Zone{
			"one.test. MX":   {"one.test. 60 IN MX 10 mx.one.test."},
			"mx.one.test. A": {"mx.one.test. 60 IN A 127.0.0.2"},
			"two.test. MX":   {"two.test. 60 IN MX 10 mx.two.test."},
			"mx.two.test. A": {"mx.two.test. 60 IN A 127.0.0.3"},
		},
		servers: map[string]*fakeBackend{"127.0.0.2": {}, "127.0.0.3": {}},
		rcpts:   []string{"a@one.test", "b@Two.Test", "c@one.test", "postmaster"},
		want: []Result{
			{Rcpt: "a@one.test", Status: Delivered, Host: "mx.one.test [127.0.0.2]", Reply: ok},
			{Rcpt: "b@Two.Test", Status: Delivered, Host: "mx.two.test [127.0.0.3]", Reply: ok},
			{Rcpt: "c@one.test", Status: Delivered, Host: "mx.one.test [127.0.0.2]", Reply: ok},
			{Rcpt: "postmaster", Status: Failed, Reason: Unroutable, Err: "address has no domain to look up MX hosts for"},
		},
		got: map[string]int{"127.0.0.2": 1, "127.0.0.3": 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newMXNet(t)
			for ip, be := range tt.servers {
				n.server(ip, be, nil)
			}
			for ip, h := range tt.scripted {
				serveScripted(t, n.listen(ip), h)
			}
			tr := n.transport(n.dns(tt.zone), nil)
			if tr.Name() != "smtp" {
				t.Errorf("Name() = %q", tr.Name())
			}
			got := tr.Deliver(context.Background(), msg("s@example.net", "Subject: x\n\nhi\n", tt.rcpts...))
			checkResults(t, got, tt.want)
			for ip, want := range tt.got {
				if n := len(tt.servers[ip].received()); n != want {
					t.Errorf("%s received %d messages, want %d", ip, n, want)
				}
			}
		})
	}
}

// The TLS a domain or host demands: DANE from DNSSEC-validated TLSA
// records, MTA-STS from an enforced policy; else opportunistic.
func TestMXTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	good := ca.Certificate(t, "mx1.example.test")
	wrongName := ca.Certificate(t, "elsewhere.test")
	selfSigned := tlstest.Certificate(t, "mx1.example.test")
	withCert := func(c tls.Certificate) func(*smtp.Server) {
		return func(s *smtp.Server) { s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{c}} }
	}
	// tlsaRecord is the TLSA record of the last certificate of c's chain:
	// DANE-EE for a self-signed one, DANE-TA (its CA) for an issued one.
	tlsaRecord := func(c tls.Certificate, port int) string {
		usage := 3
		if len(c.Certificate) > 1 {
			usage = 2
		}
		cert := parseCert(t, c.Certificate[len(c.Certificate)-1])
		h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		return fmt.Sprintf("_%d._tcp.mx1.example.test. 60 IN TLSA %d 1 1 %s", port, usage, hex.EncodeToString(h[:]))
	}
	const ok = "250 2.0.0 OK: queued"
	const host = "mx1.example.test [127.0.0.2]"
	tests := []struct {
		name    string
		tlsa    *tls.Certificate // TLSA record for this certificate (tlsaRecord)
		secure  bool             // answered with AD
		server  func(*smtp.Server)
		sts     string // our MTA-STS setting, with an enforce policy published
		logged  string // a line Log must have had
		want    Result
		wantTLS bool
	}{
		{name: "opportunistic, self-signed", server: withCert(selfSigned), want: Result{Status: Delivered, Reply: ok}, wantTLS: true},
		{name: "opportunistic, no TLS", want: Result{Status: Delivered, Reply: ok}},
		{name: "DANE EE matches", tlsa: &selfSigned, secure: true, server: withCert(selfSigned), want: Result{Status: Delivered, Reply: ok}, wantTLS: true},
		{name: "DANE TA anchors the chain", tlsa: &good, secure: true, server: withCert(good), want: Result{Status: Delivered, Reply: ok}, wantTLS: true},
		{name: "DANE TA, name mismatch", tlsa: &good, secure: true, server: withCert(wrongName),
			want: Result{Status: Deferred, Reason: TLSFailure, Err: "TLS session failure: DANE: no TLSA record matches the server's certificate chain: the trust anchor it names does not validate the certificate for mx1.example.test: x509: certificate is valid for elsewhere.test, not mx1.example.test"}},
		{name: "DANE EE does not match", tlsa: &good, secure: true, server: withCert(selfSigned),
			want: Result{Status: Deferred, Reason: TLSFailure, Err: "TLS session failure: DANE: no TLSA record matches the server's certificate chain"}},
		{name: "DANE but no TLS offered", tlsa: &good, secure: true,
			want: Result{Status: Deferred, Reason: TLSRequired, Err: "a TLS session is required (DANE TLSA records of _PORT._tcp.mx1.example.test), but the server did not offer TLS support"}},
		{name: "TLSA without AD is ignored", tlsa: &good, server: withCert(selfSigned), want: Result{Status: Delivered, Reply: ok}, wantTLS: true},
		{name: "MTA-STS enforce, verified", sts: "enforce", server: withCert(good), want: Result{Status: Delivered, Reply: ok}, wantTLS: true},
		{name: "MTA-STS enforce, name mismatch", sts: "enforce", server: withCert(wrongName),
			want: Result{Status: Deferred, Reason: TLSFailure, Err: "TLS session failure: tls: failed to verify certificate: x509: certificate is valid for elsewhere.test, not mx1.example.test"}},
		{name: "MTA-STS enforce, no TLS offered", sts: "enforce",
			want: Result{Status: Deferred, Reason: TLSRequired, Err: "a TLS session is required (MTA-STS policy of example.test), but the server did not offer TLS support"}},
		{name: "MTA-STS testing: delivered anyway", sts: "testing", server: withCert(wrongName), want: Result{Status: Delivered, Reply: ok}, wantTLS: true,
			logged: "MTA-STS policy of example.test (testing): certificate of mx1.example.test does not verify: x509: certificate is valid for elsewhere.test, not mx1.example.test: delivering anyway"},
		{name: "MTA-STS testing, no TLS: delivered anyway", sts: "testing", want: Result{Status: Delivered, Reply: ok},
			logged: "MTA-STS policy of example.test (testing): no TLS session with mx1.example.test: delivering anyway"},
		{name: "DANE before MTA-STS", sts: "enforce", tlsa: &selfSigned, secure: true, server: withCert(selfSigned), want: Result{Status: Delivered, Reply: ok}, wantTLS: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newMXNet(t)
			be := &fakeBackend{}
			wire := n.server("127.0.0.2", be, tt.server)
			zone := dnstest.Zone{
				"example.test. MX":    {"example.test. 60 IN MX 10 mx1.example.test."},
				"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
			}
			var secure []string
			if tt.tlsa != nil {
				zone[fmt.Sprintf("_%d._tcp.mx1.example.test. TLSA", n.port)] = []string{tlsaRecord(*tt.tlsa, n.port)}
				if tt.secure {
					secure = append(secure, fmt.Sprintf("_%d._tcp.mx1.example.test", n.port))
				}
			}
			var logged logLines
			change := func(o *MXOptions) { o.RootCAs = ca.Pool; o.Log = logged.add }
			if tt.sts != "" {
				port := tlstest.ServeMTASTS(t, ca, "mta-sts.example.test", "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 3600\n")
				zone["_mta-sts.example.test. TXT"] = []string{`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=1"`}
				zone["mta-sts.example.test. A"] = []string{"mta-sts.example.test. 60 IN A 127.0.0.1"}
				change = func(o *MXOptions) { o.RootCAs = ca.Pool; o.Log = logged.add; o.MTASTS = tt.sts; o.MTASTSPort = port }
			}
			tr := n.transport(n.dns(zone, secure...), change)
			got := tr.Deliver(context.Background(), msg("s@example.net", "Subject: x\n\nhi\n", "a@example.test"))
			want := tt.want
			want.Rcpt, want.Host = "a@example.test", host
			want.Err = strings.Replace(want.Err, "PORT", fmt.Sprint(n.port), 1)
			checkResults(t, got, []Result{want})
			msgs := be.received()
			if tt.want.Status == Delivered && (len(msgs) != 1 || msgs[0].tls != tt.wantTLS) {
				t.Errorf("server received %+v, want one message, TLS %v", msgs, tt.wantTLS)
			}
			if tt.want.Status != Delivered && strings.Contains(wire.String(), "MAIL FROM") {
				t.Errorf("MAIL sent although the session was refused:\n%s", wire.String())
			}
			if tt.logged != "" && !logged.has(tt.logged) {
				t.Errorf("logged %q, want %q", logged.all(), tt.logged)
			}
		})
	}
}

// logLines collects what a transport logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(id, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, id+" "+text)
}

func (l *logLines) has(s string) bool {
	return strings.Contains(l.all(), s)
}

func (l *logLines) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// MaxPerDomain bounds the sessions to one domain at once; the others
// wait their turn, and a wait ends with the context.
func TestMXMaxPerDomain(t *testing.T) {
	n := newMXNet(t)
	var open, most atomic.Int32
	serveScripted(t, n.listen("127.0.0.2"), func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
		// Counted down before the reply to QUIT, after which the client
		// may start the next session.
		now := open.Add(1)
		counted := true
		defer func() {
			if counted {
				open.Add(-1)
			}
		}()
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		time.Sleep(100 * time.Millisecond)
		tp.PrintfLine("220 mx ESMTP")
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.SplitN(line, " ", 2)[0]) {
			case "EHLO":
				tp.PrintfLine("250 mx")
			case "DATA":
				tp.PrintfLine("354 go ahead")
				tp.ReadDotBytes()
				tp.PrintfLine("250 2.0.0 queued")
			case "QUIT":
				open.Add(-1)
				counted = false
				tp.PrintfLine("221 bye")
				return
			default:
				tp.PrintfLine("250 ok")
			}
		}
	})
	zone := dnstest.Zone{
		"example.test. MX":    {"example.test. 60 IN MX 10 mx1.example.test."},
		"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
	}
	tr := n.transport(n.dns(zone), func(o *MXOptions) { o.MaxPerDomain = 2 })
	var wg sync.WaitGroup
	var delivered atomic.Int32
	for range 6 {
		wg.Go(func() {
			if rs := tr.Deliver(context.Background(), msg("", "x\n", "a@example.test")); rs[0].Status == Delivered {
				delivered.Add(1)
			}
		})
	}
	wg.Wait()
	if delivered.Load() != 6 || most.Load() != 2 {
		t.Errorf("%d of 6 delivered with at most %d sessions at once, want 6 with 2", delivered.Load(), most.Load())
	}

	// Two sessions held by stalled deliveries: a third waits until its
	// context ends.
	hold := make(chan struct{})
	serveStalled := newMXNet(t)
	serveScripted(t, serveStalled.listen("127.0.0.2"), func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
		select {
		case <-hold:
		case <-done:
		}
		c.Close()
	})
	tr = serveStalled.transport(serveStalled.dns(zone), func(o *MXOptions) { o.MaxPerDomain = 2; o.CommandTimeout = 5 * time.Second })
	for range 2 {
		wg.Go(func() { tr.Deliver(context.Background(), msg("", "x\n", "a@example.test")) })
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rs := tr.Deliver(ctx, msg("", "x\n", "a@example.test"))
	close(hold)
	wg.Wait()
	checkResults(t, rs, []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: Abandoned, Err: "delivery abandoned: context deadline exceeded"}})
}

func parseCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An MTA-STS policy in enforce mode skips the MX hosts it does not list
// and uses the others; in testing mode it only logs them.
func TestMXMTASTSUnlistedHost(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	for _, mode := range []string{"enforce", "testing"} {
		t.Run(mode, func(t *testing.T) {
			n := newMXNet(t)
			withCert := func(name string) func(*smtp.Server) {
				return func(s *smtp.Server) {
					s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.Certificate(t, name)}}
				}
			}
			unlisted, listed := &fakeBackend{}, &fakeBackend{}
			n.server("127.0.0.3", unlisted, withCert("mx0.example.test"))
			n.server("127.0.0.2", listed, withCert("mx1.example.test"))
			port := tlstest.ServeMTASTS(t, ca, "mta-sts.example.test", "version: STSv1\nmode: "+mode+"\nmx: *.example.test\nmax_age: 3600\n")
			zone := dnstest.Zone{
				"example.test. MX":           {"example.test. 60 IN MX 10 mx0.other.test.", "example.test. 60 IN MX 20 mx1.example.test."},
				"mx0.other.test. A":          {"mx0.other.test. 60 IN A 127.0.0.3"},
				"mx1.example.test. A":        {"mx1.example.test. 60 IN A 127.0.0.2"},
				"_mta-sts.example.test. TXT": {`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=1"`},
				"mta-sts.example.test. A":    {"mta-sts.example.test. 60 IN A 127.0.0.1"},
			}
			var logged logLines
			tr := n.transport(n.dns(zone), func(o *MXOptions) {
				o.MTASTS, o.MTASTSPort, o.RootCAs, o.Log = "enforce", port, ca.Pool, logged.add
			})
			got := tr.Deliver(context.Background(), msg("s@example.net", "Subject: x\n\nhi\n", "a@example.test"))
			wantHost, wantUnlisted := "mx1.example.test [127.0.0.2]", 0
			if mode == "testing" {
				wantHost, wantUnlisted = "mx0.other.test [127.0.0.3]", 1
				if want := "1tXyZa-000AbC-Qr MTA-STS policy of example.test (testing) does not list MX host mx0.other.test: delivering anyway"; !logged.has(want) {
					t.Errorf("logged %q, want %q", logged.all(), want)
				}
			}
			checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Delivered, Host: wantHost, Reply: "250 2.0.0 OK: queued"}})
			if n := len(unlisted.received()); n != wantUnlisted {
				t.Errorf("the unlisted host received %d messages, want %d", n, wantUnlisted)
			}
		})
	}
}

// MX hosts of equal preference share the load: both get mail (the chance
// that 20 deliveries all pick one is 2 in a million).
func TestMXEqualPreference(t *testing.T) {
	n := newMXNet(t)
	a, b := &fakeBackend{}, &fakeBackend{}
	n.server("127.0.0.2", a, nil)
	n.server("127.0.0.3", b, nil)
	tr := n.transport(n.dns(dnstest.Zone{
		"example.test. MX":    {"example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 10 mx2.example.test."},
		"mx1.example.test. A": {"mx1.example.test. 60 IN A 127.0.0.2"},
		"mx2.example.test. A": {"mx2.example.test. 60 IN A 127.0.0.3"},
	}), nil)
	for range 20 {
		if rs := tr.Deliver(context.Background(), msg("", "x\n", "a@example.test")); rs[0].Status != Delivered {
			t.Fatalf("%+v", rs[0])
		}
	}
	if na, nb := len(a.received()), len(b.received()); na == 0 || nb == 0 {
		t.Errorf("mx1 got %d messages, mx2 %d: want both some", na, nb)
	}
}

// Package dnstest is the tests' one fake DNS server: an in-process miekg/dns
// server on 127.0.0.1 (UDP and TCP on the same port) that answers from a
// zone table or a test's own handler, can be switched to fail (SERVFAIL,
// REFUSED, never answering, truncating UDP answers), counts the questions
// it gets, and stops when the test ends. Answer packs an answer for the
// seed corpus of a fuzz target that reads DNS off the network.
package dnstest

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Fault is a way the server misbehaves.
type Fault int

const (
	OK       Fault = iota // answer normally
	ServFail              // answer SERVFAIL
	Refused               // answer REFUSED
	Drop                  // never answer (a dead resolver)
	Truncate              // answer over UDP truncated and empty; TCP gets the answer
)

// Handler builds the answer to q (asked over TCP when tcp); its Rcode is
// kept. A nil answer sends nothing: the question is never answered.
type Handler func(q dns.Question, tcp bool) *dns.Msg

// Server is a running fake DNS server.
type Server struct {
	Addr string // "127.0.0.1:PORT", UDP and TCP

	h Handler

	mu    sync.Mutex
	fault Fault
	asked []string // "name. TYPE", name lower case; "tcp " prefix over TCP
}

// Start serves h on 127.0.0.1 until the test ends.
func Start(tb testing.TB, h Handler) *Server {
	tb.Helper()
	s := &Server{h: h}
	var pc net.PacketConn
	var l net.Listener
	// The TCP port must be free too; another process may hold it.
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try == 10 {
			tb.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	serve(tb, &dns.Server{PacketConn: pc, Handler: s.handler(false)})
	serve(tb, &dns.Server{Listener: l, Handler: s.handler(true)})
	return s
}

// StartZone serves z (see Zone) until the test ends.
func StartZone(tb testing.TB, z Zone) *Server {
	tb.Helper()
	return Start(tb, z.Handler(tb))
}

// SetFault makes every later answer misbehave as f; OK restores them.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

func (s *Server) handler(tcp bool) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		if len(r.Question) != 1 {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeFormatError)
			_ = w.WriteMsg(m)
			return
		}
		q := r.Question[0]
		key := strings.ToLower(q.Name) + " " + dns.TypeToString[q.Qtype]
		if tcp {
			key = "tcp " + key
		}
		s.mu.Lock()
		s.asked = append(s.asked, key)
		fault := s.fault
		s.mu.Unlock()
		var m *dns.Msg
		switch fault {
		case ServFail:
			m = &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeServerFailure}}
		case Refused:
			m = &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeRefused}}
		case Drop:
			return
		case Truncate:
			if !tcp {
				m = &dns.Msg{MsgHdr: dns.MsgHdr{Truncated: true}}
				break
			}
			fallthrough
		default:
			m = s.h(q, tcp)
		}
		if m == nil {
			return
		}
		// SetReply resets the code and flags the handler chose.
		rcode, tc := m.Rcode, m.Truncated
		m.SetReply(r)
		m.Rcode, m.Truncated = rcode, tc
		m.Authoritative = true
		if !tcp {
			// As a real server: what does not fit the client's buffer
			// is cut, with the TC bit set.
			size := dns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
				m.SetEdns0(opt.UDPSize(), false)
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	}
}

// serve runs srv until the test ends.
func serve(tb testing.TB, srv *dns.Server) {
	tb.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		tb.Fatalf("dnstest: %v", err)
	}
	tb.Cleanup(func() {
		_ = srv.ShutdownContext(context.Background())
		<-done
	})
}

// Count is how many times the server was asked key: "name. TYPE" over
// UDP, "tcp name. TYPE" over TCP (name lower case, fully qualified).
func (s *Server) Count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.asked {
		if k == key {
			n++
		}
	}
	return n
}

// Total is how many questions the server got.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.asked)
}

// Asked is every question in order, as Count's keys.
func (s *Server) Asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

// Zone is DNS data: "name. TYPE" → records in zone file syntax
// ("a.test. 60 IN A 127.0.0.2"); names are matched case-insensitively
// and written fully qualified. A name that appears in no key is NXDOMAIN;
// a known name without records of the asked type is NODATA. A key
// "name. SERVFAIL", "name. REFUSED" or "name. DROP" (no records) makes
// every question about name fail so. The key ". SOA" gives the SOA record
// sent in the authority section of NXDOMAIN and NODATA answers (negative
// caching, RFC 2308); without it they carry none.
type Zone map[string][]string

// Handler compiles z; a record that does not parse fails the test.
func (z Zone) Handler(tb testing.TB) Handler {
	tb.Helper()
	records := make(map[string][]dns.RR)
	faults := make(map[string]Fault)
	names := make(map[string]bool)
	var soa dns.RR
	for key, rrs := range z {
		name, typ, ok := strings.Cut(key, " ")
		if !ok {
			tb.Fatalf("dnstest: zone key %q is not \"name. TYPE\"", key)
		}
		name = dns.Fqdn(strings.ToLower(name))
		if key == ". SOA" {
			soa = parse(tb, rrs[0])
			continue
		}
		names[name] = true
		switch typ {
		case "SERVFAIL":
			faults[name] = ServFail
			continue
		case "REFUSED":
			faults[name] = Refused
			continue
		case "DROP":
			faults[name] = Drop
			continue
		}
		k := name + " " + strings.ToUpper(typ)
		for _, s := range rrs {
			records[k] = append(records[k], parse(tb, s))
		}
	}
	return func(q dns.Question, _ bool) *dns.Msg {
		name := strings.ToLower(q.Name)
		m := new(dns.Msg)
		switch faults[name] {
		case ServFail:
			m.Rcode = dns.RcodeServerFailure
			return m
		case Refused:
			m.Rcode = dns.RcodeRefused
			return m
		case Drop:
			return nil
		}
		if !names[name] {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range records[name+" "+dns.TypeToString[q.Qtype]] {
			rr = dns.Copy(rr)
			// Answer under the name as asked (0x20 case, CNAME-free).
			rr.Header().Name = q.Name
			m.Answer = append(m.Answer, rr)
		}
		if len(m.Answer) == 0 && soa != nil {
			m.Ns = []dns.RR{soa}
		}
		return m
	}
}

// Answer is the wire form of an answer to the question name (fully
// qualified) of type qtype holding records (zone file syntax); a record
// that does not parse fails the test.
func Answer(tb testing.TB, name string, qtype uint16, records ...string) []byte {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	for _, s := range records {
		m.Answer = append(m.Answer, parse(tb, s))
	}
	b, err := m.Pack()
	if err != nil {
		tb.Fatalf("dnstest: packing the answer to %s: %v", name, err)
	}
	return b
}

func parse(tb testing.TB, s string) dns.RR {
	tb.Helper()
	rr, err := dns.NewRR(s)
	if err != nil || rr == nil {
		tb.Fatalf("dnstest: record %q: %v", s, err)
	}
	return rr
}

// TXT is the zone file line of a TXT record for name holding text, split
// into character-strings of at most 255 bytes as DNS requires.
func TXT(name string, ttl int, text string) string {
	var b strings.Builder
	b.WriteString(dns.Fqdn(name))
	b.WriteString(" ")
	b.WriteString(strconv.Itoa(ttl))
	b.WriteString(" IN TXT")
	for first := true; first || text != ""; first = false {
		n := min(len(text), 255)
		b.WriteString(` "`)
		for _, ch := range []byte(text[:n]) {
			if ch == '"' || ch == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(ch)
		}
		b.WriteString(`"`)
		text = text[n:]
	}
	return b.String()
}

package dnstest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, name string, qtype uint16, network string) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 300 * time.Millisecond}
	r, _, err := c.ExchangeContext(context.Background(), m, s.Addr)
	return r, err
}

func TestZone(t *testing.T) {
	long := strings.Repeat("k", 600)
	s := StartZone(t, Zone{
		". SOA":              {"test. 300 IN SOA ns.test. h.test. 1 600 300 86400 60"},
		"A.test. A":          {"a.test. 60 IN A 192.0.2.1"},
		"a.test. TXT":        {TXT("a.test", 60, long)},
		"bad.test. SERVFAIL": nil,
		"no.test. REFUSED":   nil,
	})
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soa     bool
	}{
		{"a.test.", dns.TypeA, dns.RcodeSuccess, 1, false},
		{"A.TEST.", dns.TypeA, dns.RcodeSuccess, 1, false},
		{"a.test.", dns.TypeMX, dns.RcodeSuccess, 0, true},
		{"nx.test.", dns.TypeA, dns.RcodeNameError, 0, true},
		{"bad.test.", dns.TypeA, dns.RcodeServerFailure, 0, false},
		{"no.test.", dns.TypeTXT, dns.RcodeRefused, 0, false},
	}
	for _, tt := range tests {
		r, err := ask(t, s, tt.name, tt.qtype, "udp")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if r.Rcode != tt.rcode || len(r.Answer) != tt.answers || (len(r.Ns) == 1) != tt.soa {
			t.Errorf("%s %s: %s with %d answers, %d authority; want %s, %d, SOA %v", tt.name, dns.TypeToString[tt.qtype],
				dns.RcodeToString[r.Rcode], len(r.Answer), len(r.Ns), dns.RcodeToString[tt.rcode], tt.answers, tt.soa)
		}
	}
	// Too long for a plain UDP answer: truncated; whole over TCP.
	if r, err := ask(t, s, "a.test.", dns.TypeTXT, "udp"); err != nil || !r.Truncated {
		t.Errorf("long TXT over UDP: %v, err %v; want truncated", r, err)
	}
	r, err := ask(t, s, "a.test.", dns.TypeTXT, "tcp")
	if err != nil || len(r.Answer) != 1 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != long {
		t.Errorf("long TXT over TCP: %v, err %v", r, err)
	}
	if n := s.Count("a.test. TXT"); n != 1 {
		t.Errorf("Count(a.test. TXT) = %d, want 1", n)
	}
	if n := s.Count("tcp a.test. TXT"); n != 1 {
		t.Errorf("Count(tcp a.test. TXT) = %d, want 1", n)
	}
	if n := s.Total(); n != len(tests)+2 {
		t.Errorf("Total() = %d, want %d", n, len(tests)+2)
	}
}

func TestFaults(t *testing.T) {
	s := StartZone(t, Zone{"a.test. A": {"a.test. 60 IN A 192.0.2.1"}})
	for _, tc := range []struct {
		f     Fault
		rcode int
	}{{ServFail, dns.RcodeServerFailure}, {Refused, dns.RcodeRefused}} {
		s.SetFault(tc.f)
		if r, err := ask(t, s, "a.test.", dns.TypeA, "udp"); err != nil || r.Rcode != tc.rcode {
			t.Errorf("fault %d: %v, err %v", tc.f, r, err)
		}
	}
	s.SetFault(Drop)
	if _, err := ask(t, s, "a.test.", dns.TypeA, "udp"); err == nil {
		t.Error("Drop answered")
	}
	s.SetFault(Truncate)
	if r, err := ask(t, s, "a.test.", dns.TypeA, "udp"); err != nil || !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("Truncate over UDP: %v, err %v", r, err)
	}
	if r, err := ask(t, s, "a.test.", dns.TypeA, "tcp"); err != nil || len(r.Answer) != 1 {
		t.Errorf("Truncate over TCP: %v, err %v", r, err)
	}
	s.SetFault(OK)
	if r, err := ask(t, s, "a.test.", dns.TypeA, "udp"); err != nil || len(r.Answer) != 1 {
		t.Errorf("after OK: %v, err %v", r, err)
	}
}

func TestAnswer(t *testing.T) {
	b := Answer(t, "d.test.", dns.TypeMX, "d.test. 60 IN MX 10 mx.d.test.", "d.test. 60 IN MX 5 mx0.d.test.")
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rr := range m.Answer {
		got = append(got, rr.String())
	}
	want := "d.test.\t60\tIN\tMX\t10 mx.d.test.|d.test.\t60\tIN\tMX\t5 mx0.d.test."
	if len(m.Question) != 1 || m.Question[0].Name != "d.test." || m.Question[0].Qtype != dns.TypeMX || strings.Join(got, "|") != want {
		t.Errorf("question %v, answers %q; want d.test. MX, %q", m.Question, got, want)
	}
}

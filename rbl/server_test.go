package rbl

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// fakeDNS is an in-process DNS server on 127.0.0.1 that answers through a
// test's handler and counts the questions it gets.
type fakeDNS struct {
	addr string
	mu   sync.Mutex
	seen map[string]int // "name TYPE" or "tcp name TYPE" → questions
}

// reply builds the answer to q; nil sends nothing (a resolver that never
// answers).
type reply func(q dns.Question, tcp bool) *dns.Msg

// startDNS serves on UDP, and on TCP at the same port when withTCP.
func startDNS(t testing.TB, withTCP bool, h reply) *fakeDNS {
	t.Helper()
	f := &fakeDNS{seen: make(map[string]int)}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = pc.LocalAddr().String()
	handler := func(tcp bool) dns.HandlerFunc {
		return func(w dns.ResponseWriter, r *dns.Msg) {
			if len(r.Question) != 1 {
				return
			}
			q := r.Question[0]
			key := q.Name + " " + dns.TypeToString[q.Qtype]
			if tcp {
				key = "tcp " + key
			}
			f.mu.Lock()
			f.seen[key]++
			f.mu.Unlock()
			m := h(q, tcp)
			if m == nil {
				return
			}
			// SetReply resets the code the handler chose.
			rcode := m.Rcode
			m.SetReply(r)
			m.Rcode = rcode
			_ = w.WriteMsg(m)
		}
	}
	serve(t, &dns.Server{PacketConn: pc, Handler: handler(false)})
	if withTCP {
		l, err := net.Listen("tcp", f.addr)
		if err != nil {
			t.Fatalf("TCP on the UDP port %s: %v", f.addr, err)
		}
		serve(t, &dns.Server{Listener: l, Handler: handler(true)})
	}
	return f
}

// serve runs srv until the test ends.
func serve(t testing.TB, srv *dns.Server) {
	t.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("DNS server: %v", err)
	}
	t.Cleanup(func() {
		_ = srv.ShutdownContext(context.Background())
		<-done
	})
}

// count is how many times the server was asked "name TYPE" (prefix "tcp "
// for TCP).
func (f *fakeDNS) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[key]
}

// total is how many questions the server got.
func (f *fakeDNS) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.seen {
		n += c
	}
	return n
}

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return r
}

// zoneData answers from a table of "name TYPE" → records (in zone file
// syntax); other names get NXDOMAIN with an SOA of minimum 60.
func zoneData(t testing.TB, records map[string][]string) reply {
	soa := rr(t, "test. 300 IN SOA ns.test. hostmaster.test. 1 600 300 86400 60")
	return func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		rrs, ok := records[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]]
		if !ok {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa}
			return m
		}
		for _, s := range rrs {
			m.Answer = append(m.Answer, rr(t, s))
		}
		return m
	}
}

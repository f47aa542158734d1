package rbl

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
	"mxgate/internal/statetest"
	"mxgate/state"
)

// listed answers 127.0.0.2 with a reason for 192.0.2.1, NXDOMAIN for the rest.
func listed(t *testing.T) *dnstest.Server {
	return dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		if !strings.HasPrefix(q.Name, "1.2.0.192.") {
			m.Rcode = dns.RcodeNameError
			return m
		}
		if q.Qtype == dns.TypeTXT {
			m.Answer = []dns.RR{rr(t, q.Name+` 600 IN TXT "listed: spam"`)}
		} else {
			m.Answer = []dns.RR{rr(t, q.Name+" 600 IN A 127.0.0.2")}
		}
		return m
	})
}

// TestSharedCache: two gateways on one real redis-server; what the first
// looked up, the second answers without asking DNS, with the same hit.
func TestSharedCache(t *testing.T) {
	srv := listed(t)
	st, err := state.Open(state.Options{URL: peertest.Redis(t), Timeout: time.Second, PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	o := Options{Resolvers: []string{srv.Addr}, Shared: st, Lists: []List{{Zone: "bl.test", Kind: KindIP}}}
	one, two := newChecker(t, o), newChecker(t, o)
	for _, ip := range []string{"192.0.2.1", "192.0.2.9"} {
		first := render(wait(t, one.StartIP(context.Background(), netip.MustParseAddr(ip))))
		asked := srv.Total()
		second := render(wait(t, two.StartIP(context.Background(), netip.MustParseAddr(ip))))
		if second != first {
			t.Errorf("%s: second gateway got\n%s\nfirst\n%s", ip, second, first)
		}
		if srv.Total() != asked {
			t.Errorf("%s: the second gateway asked DNS again: %q", ip, srv.Asked())
		}
	}
	if v, ok, _ := st.Get(context.Background(), "rbl:TXT:1.2.0.192.bl.test."); !ok || !strings.Contains(string(v), "listed: spam") {
		t.Errorf("shared TXT record = %s, %v", v, ok)
	}
}

// TestSharedCacheDown: a shared store that never answers costs one
// timeout, one paniclog line; the lists still answer, each lookup asked
// of DNS.
func TestSharedCacheDown(t *testing.T) {
	srv := listed(t)
	st, addr := statetest.Silent(t, 200*time.Millisecond)
	var mu sync.Mutex
	var panics []string
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Shared: st, Lists: []List{{Zone: "bl.test", Kind: KindIP}},
		Panic: func(s string) { mu.Lock(); panics = append(panics, s); mu.Unlock() }})
	start := time.Now()
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		r := wait(t, c.StartIP(context.Background(), netip.MustParseAddr(ip)))
		if len(r.Errors) != 0 {
			t.Errorf("%s: %s", ip, render(r))
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("three lookups took %v with a 200ms store timeout", took)
	}
	if got := render(wait(t, c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1")))); !strings.Contains(got, "listed: spam") {
		t.Errorf("listed client: %s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(panics) != 1 || !strings.Contains(panics[0], addr) {
		t.Errorf("paniclog %q, want one line naming the store", panics)
	}
}

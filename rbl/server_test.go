package rbl

import (
	"testing"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
)

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return r
}

// startZone serves records ("name. TYPE" → records in zone file syntax);
// other names get NXDOMAIN with an SOA of minimum 60.
func startZone(t testing.TB, records map[string][]string) *dnstest.Server {
	t.Helper()
	z := dnstest.Zone{". SOA": {"test. 300 IN SOA ns.test. hostmaster.test. 1 600 300 86400 60"}}
	for k, v := range records {
		z[k] = v
	}
	return dnstest.StartZone(t, z)
}

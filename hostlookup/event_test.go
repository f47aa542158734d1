package hostlookup

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"mxgate/event"
	"mxgate/internal/dnstest"
	"mxgate/internal/eventtest"
)

// TestLookupEvents: naming a client asks PTR, then the name's addresses,
// each a DNSLookup event; the next client of that address is named from
// the cache, one Cached event.
func TestLookupEvents(t *testing.T) {
	srv := dnstest.StartZone(t, zone)
	rec, bus := eventtest.New()
	r := newResolver(t, []string{srv.Addr}, Options{Bus: bus})
	ip := netip.MustParseAddr("192.0.2.1")
	qtypes := func() []string {
		var qs []string
		for _, e := range rec.Of(event.DNSLookup) {
			q := e.QType
			if e.Cached {
				q += " cached"
			}
			qs = append(qs, q)
		}
		rec.Reset()
		return qs
	}
	if got := r.Lookup(context.Background(), ip); got.Status != OK {
		t.Fatalf("lookup: %v", got.Status)
	}
	if got := qtypes(); len(got) < 2 || got[0] != "PTR" || slices.Contains(got, "PTR cached") {
		t.Errorf("first lookup's events %q, want PTR then the forward lookups", got)
	}
	r.Lookup(context.Background(), ip)
	if got, want := qtypes(), []string{"PTR cached"}; !slices.Equal(got, want) {
		t.Errorf("second lookup's events %q, want %q", got, want)
	}
}

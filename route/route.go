// Package route owns routing: which store or outbound path a recipient's
// mail takes. One Router answers the daemon's queue, the RCPT check that
// refuses what cannot be routed, and -bt, so the three always agree.
//
// The rules: a domain a [[route]] names goes to that route (a relay domain
// or not: a partner route); any other relay domain goes to [downstream];
// every other domain goes out by [outbound] (MX or smarthost), or nowhere
// when outbound is "none". A store never gets a foreign domain's mail.
package route

import (
	"context"
	"strings"
	"sync"
	"time"

	"mxgate/deliver"
)

// Kind is what sort of destination a recipient has.
type Kind int

const (
	// Unroutable: no route (a foreign domain with outbound "none").
	Unroutable Kind = iota
	// Store: a mail store, [downstream] or a [[route]].
	Store
	// Outbound: out to the domain's MX hosts or through the smarthost.
	Outbound
)

// Router names of the built-in routes, logged as R=.
const (
	DefaultRouter   = "downstream"
	MXRouter        = "dnslookup" // Exim's name for its MX router
	SmarthostRouter = "smarthost"
)

// StoreRoute is one mail store: [downstream] or a [[route]].
type StoreRoute struct {
	Name      string   // R=: DefaultRouter or the route's name
	Domains   []string // the recipient domains of a [[route]]; none for [downstream]
	Transport deliver.Transport
	// Target is where the transport goes: -bt shows its hosts, socket or
	// Maildir. A *deliver.Maildir Transport is also asked at RCPT whether
	// it has a Maildir for the recipient (Refusal).
	Target    deliver.Target
	OverQuota string // "defer", "bounce" or "discard"
	Verify    string // the recipient verification source, as configured (-bt)
}

// OutboundRoute is how mail for other domains leaves.
type OutboundRoute struct {
	Mode      string            // "mx", "smarthost" or "none"
	Transport deliver.Transport // nil for "none"
	Smarthost deliver.Target    // smarthost mode: where (-bt)
}

// Options configure a Router; cmd/mxgate builds them from the config, and
// they are taken as given.
type Options struct {
	RelayDomains []string // lower-cased, no trailing dot
	Default      StoreRoute
	Routes       []StoreRoute
	Outbound     OutboundRoute
	// Resolvers and DNSTimeout serve -bt's look-ups of a store's or the
	// smarthost's host name only; -bt asks the MX transport itself
	// (deliver.Planner) where mail for a domain would go.
	Resolvers  []string
	DNSTimeout time.Duration
}

// Destination is where one recipient goes, as data.
type Destination struct {
	Router    string            // R=; "" when Unroutable
	Kind      Kind              //
	Transport deliver.Transport // nil when Unroutable
	// OverQuota is the store's policy for a mailbox-full reply; "" for
	// outbound mail, where the remote reply's class decides as for any
	// other reply.
	OverQuota string
	store     *StoreRoute // Kind Store: the store, for -bt
}

// Router routes recipients. It is safe for concurrent use.
type Router struct {
	o      Options
	relay  map[string]bool
	routes map[string]*StoreRoute
}

// New returns the Router of o.
func New(o Options) *Router {
	r := &Router{o: o, relay: make(map[string]bool), routes: make(map[string]*StoreRoute)}
	for _, d := range o.RelayDomains {
		r.relay[d] = true
	}
	for i := range r.o.Routes {
		for _, d := range r.o.Routes[i].Domains {
			r.routes[d] = &r.o.Routes[i]
		}
	}
	return r
}

// Route is the destination of rcpt, an address as the spool holds it
// (local@domain, a quoted local part kept quoted). An address without a
// domain has no route.
func (r *Router) Route(rcpt string) Destination {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return Destination{Kind: Unroutable}
	}
	return r.Domain(rcpt[at+1:])
}

// Domain is the destination of mail for domain (any case, a trailing dot
// allowed): what Route answers for every address of it.
func (r *Router) Domain(domain string) Destination { return r.routeDomain(domainKey(domain)) }

// domainKey is a domain as the config spells it: lower-cased, without a
// trailing dot.
func domainKey(d string) string { return strings.TrimSuffix(strings.ToLower(d), ".") }

func (r *Router) routeDomain(domain string) Destination {
	if s := r.routes[domain]; s != nil {
		return storeDest(s)
	}
	if r.relay[domain] {
		return storeDest(&r.o.Default)
	}
	switch r.o.Outbound.Mode {
	case "mx":
		return Destination{Router: MXRouter, Kind: Outbound, Transport: r.o.Outbound.Transport}
	case "smarthost":
		return Destination{Router: SmarthostRouter, Kind: Outbound, Transport: r.o.Outbound.Transport}
	}
	return Destination{Kind: Unroutable}
}

func storeDest(s *StoreRoute) Destination {
	return Destination{Router: s.Name, Kind: Store, Transport: s.Transport, OverQuota: s.OverQuota, store: s}
}

// Close ends the sessions the transports keep open between messages
// (deliver.Closer), as long as ctx lets it: at shutdown, after the last
// delivery.
func (r *Router) Close(ctx context.Context) {
	var wg sync.WaitGroup
	transports := []deliver.Transport{r.o.Default.Transport, r.o.Outbound.Transport}
	for _, s := range r.o.Routes {
		transports = append(transports, s.Transport)
	}
	for _, t := range transports {
		if c, ok := t.(deliver.Closer); ok {
			wg.Go(func() { c.Close(ctx) })
		}
	}
	wg.Wait()
}

// isRelay reports a relay domain: mail for it is accepted from anyone.
func (r *Router) isRelay(domain string) bool { return r.relay[domain] }

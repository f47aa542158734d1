package rbl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"mxgate/dnsclient"
	"mxgate/event"
	"mxgate/state"
)

// Kind says what a list is looked up with.
type Kind string

const (
	KindIP           Kind = "ip"            // the client's IP address (DNSBL, DNSWL)
	KindSenderDomain Kind = "sender_domain" // the MAIL FROM domain (RHSBL)
	KindHELO         Kind = "helo"          // the HELO/EHLO name (RHSBL)
)

// List is one DNS list as configured.
type List struct {
	Zone    string   // "bl.test"
	Kind    Kind     // what is looked up in it
	Match   []string // "127.0.0.2", "127.0.0.4-127.0.0.11", "&0.0.0.4" (all mask bits set); empty = any listing code
	Weight  int      // added to the score on a hit; negative for allow-lists (DNSWL)
	OnError string   // "ignore" (timeout/SERVFAIL = not listed) | "tempfail" (451)
}

// Options configure a Checker. They are taken as given: config fills and
// checks every value (rbl.timeout, rbl.cache_size, rbl.min_ttl,
// rbl.max_ttl, the lists' kind and on_error).
type Options struct {
	Lists          []List
	Resolvers      []string      // "IP:PORT", asked in order
	Timeout        time.Duration // per lookup, all tries and resolvers included
	CacheSize      int           // answers kept, least recently used out first
	MinTTL, MaxTTL time.Duration // clamp of answer TTLs; negative answers use the SOA minimum, clamped the same way
	// Shared is the gateways' shared store ([state] url = Redis): answers
	// under "rbl:", asked on a miss and told every new one; nil: none.
	Shared state.Store
	Panic  func(text string)
	// Bus gets a DNSLookup event per question: Cached for an answer from
	// the cache or the shared store, from the DNS client for the others;
	// nil emits nothing.
	Bus *event.Bus
}

// errorInterval is the least time between two Panic reports for one zone:
// a public resolver or an over-quota account answers every query with an
// error code, and one line an hour says so.
const errorInterval = time.Hour

// Checker looks up clients and domains in the configured lists. One
// Checker serves every session: its cache and single flight are shared.
type Checker struct {
	lists   []compiledList
	dns     *dnsclient.Client
	timeout time.Duration
	minTTL  time.Duration
	maxTTL  time.Duration

	cache           *cache
	shared          state.Store
	sharedDownUntil time.Time // guarded by panicMu
	// mu orders a cache miss against a flight ending (its answer is
	// cached under mu), so that no question is sent twice.
	mu      sync.Mutex
	flights singleflight.Group

	panicf        func(string)
	errorInterval time.Duration
	panicMu       sync.Mutex
	lastPanic     map[string]time.Time // zone → last report
}

type compiledList struct {
	List
	match    []matcher
	tempfail bool
}

// New returns a Checker for o. Errors name the list's zone and the match
// item that does not compile.
func New(o Options) (*Checker, error) {
	client, err := dnsclient.New(o.Resolvers, o.Timeout, dnsclient.WithBus(o.Bus))
	if err != nil {
		return nil, fmt.Errorf("rbl: %w", err)
	}
	c := &Checker{
		dns:           client,
		timeout:       o.Timeout,
		minTTL:        o.MinTTL,
		maxTTL:        o.MaxTTL,
		cache:         newCache(o.CacheSize, o.MaxTTL, o.Bus),
		shared:        o.Shared,
		panicf:        o.Panic,
		errorInterval: errorInterval,
		lastPanic:     make(map[string]time.Time),
	}
	if c.panicf == nil {
		c.panicf = func(string) {}
	}
	for _, l := range o.Lists {
		cl := compiledList{List: l, tempfail: l.OnError == "tempfail"}
		for _, item := range l.Match {
			m, err := parseMatch(item)
			if err != nil {
				return nil, fmt.Errorf("rbl: list %s: match %q: %w", l.Zone, item, err)
			}
			cl.match = append(cl.match, m)
		}
		c.lists = append(c.lists, cl)
	}
	return c, nil
}

// Hit is a list that lists the key.
type Hit struct {
	Zone   string
	Key    string       // the IP or domain looked up (unreversed)
	Values []netip.Addr // the A records that matched
	Text   string       // TXT reason ("" if none), printable ASCII only
	Weight int
}

// ListError is a list that could not say whether the key is listed.
type ListError struct {
	Zone, Key string
	Err       error
	Tempfail  bool // the list's on_error is "tempfail"
}

func (e ListError) Error() string {
	return fmt.Sprintf("DNS list lookup for %s at %s failed: %v", e.Key, e.Zone, e.Err)
}

func (e ListError) Unwrap() error { return e.Err }

// Result is the verdict of the lists of one or more Pendings.
type Result struct {
	Score  int
	Hits   []Hit // listed (allow-lists with negative weight included), in config order
	Errors []ListError
}

// Merge adds up the results of one session (IP lists, then domain lists)
// into one score.
func Merge(rs ...Result) Result {
	var m Result
	for _, r := range rs {
		m.Score += r.Score
		m.Hits = append(m.Hits, r.Hits...)
		m.Errors = append(m.Errors, r.Errors...)
	}
	return m
}

// Tempfail reports whether a list whose on_error is "tempfail" failed.
func (r Result) Tempfail() bool {
	for _, e := range r.Errors {
		if e.Tempfail {
			return true
		}
	}
	return false
}

// Allowlisted reports whether an allow-list (a list of negative weight,
// a DNSWL) lists the key.
func (r Result) Allowlisted() bool {
	for _, h := range r.Hits {
		if h.Weight < 0 {
			return true
		}
	}
	return false
}

// Strongest is the positive-weight hit with the largest weight, the first
// in config order among equals: the list named in a rejection.
func (r Result) Strongest() (Hit, bool) {
	var best Hit
	found := false
	for _, h := range r.Hits {
		if h.Weight > 0 && (!found || h.Weight > best.Weight) {
			best, found = h, true
		}
	}
	return best, found
}

// Pending is a set of lookups under way; Wait collects them.
type Pending struct {
	done    chan struct{} // closed when every slot is settled
	mu      sync.Mutex    // guards slots[i].settled, hit and err
	slots   []slot
	once    sync.Once
	result  Result
	running atomic.Int32       // slots still looking up
	cancel  context.CancelFunc // ends the shared timeout when the last slot settles
}

// slot is one list's lookup within a Pending.
type slot struct {
	list    *compiledList
	key     string
	name    string // the query name
	settled bool
	hit     *Hit
	err     *ListError
}

// StartIP begins the lookup of ip in every "ip" list at once and returns
// at once. IPv4-mapped IPv6 addresses are looked up as IPv4.
func (c *Checker) StartIP(ctx context.Context, ip netip.Addr) *Pending {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return c.start(ctx, nil)
	}
	key := ip.String()
	var slots []slot
	for i := range c.lists {
		if l := &c.lists[i]; l.Kind == KindIP {
			slots = append(slots, slot{list: l, key: key, name: ipName(ip, l.Zone)})
		}
	}
	return c.start(ctx, slots)
}

// StartDomain begins the lookup of domain in every list of kind ("helo"
// or "sender_domain") at once and returns at once. A domain that cannot be
// listed (empty, an address literal) is looked up nowhere.
func (c *Checker) StartDomain(ctx context.Context, kind Kind, domain string) *Pending {
	d := normalizeDomain(domain)
	if d == "" || kind == KindIP {
		return c.start(ctx, nil)
	}
	var slots []slot
	for i := range c.lists {
		l := &c.lists[i]
		name := d + "." + l.Zone + "."
		// A name over 255 octets cannot exist, so it is not listed.
		if l.Kind != kind || len(name) > 254 {
			continue
		}
		slots = append(slots, slot{list: l, key: d, name: name})
	}
	return c.start(ctx, slots)
}

// start settles from the cache what it can, then runs the rest in
// parallel under one timeout.
func (c *Checker) start(ctx context.Context, slots []slot) *Pending {
	p := &Pending{done: make(chan struct{}), slots: slots}
	var missing []int
	for i := range p.slots {
		if !c.settleCached(&p.slots[i]) {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		close(p.done)
		return p
	}
	ctx, p.cancel = context.WithTimeout(ctx, c.timeout)
	p.running.Store(int32(len(missing)))
	for _, i := range missing {
		go func() {
			hit, lerr := c.resolve(ctx, &p.slots[i])
			p.mu.Lock()
			p.slots[i].hit, p.slots[i].err, p.slots[i].settled = hit, lerr, true
			p.mu.Unlock()
			if p.running.Add(-1) == 0 {
				p.cancel()
				close(p.done)
			}
		}()
	}
	return p
}

// settleCached settles s when the cache holds every answer it needs.
func (c *Checker) settleCached(s *slot) bool {
	now := time.Now()
	a, ok := c.cache.get(cacheKey{s.name, dns.TypeA}, now)
	if !ok {
		return false
	}
	values := c.evaluate(s, a.addrs)
	if len(values) == 0 {
		s.settled = true
		return true
	}
	t, ok := c.cache.get(cacheKey{s.name, dns.TypeTXT}, now)
	if !ok {
		return false
	}
	s.hit = c.hit(s, values, t.text)
	s.settled = true
	return true
}

// resolve looks s up: A for the verdict, then TXT for the reason of a hit.
func (c *Checker) resolve(ctx context.Context, s *slot) (*Hit, *ListError) {
	a, err := c.lookup(ctx, s.name, dns.TypeA)
	if err != nil {
		return nil, &ListError{Zone: s.list.Zone, Key: s.key, Err: err, Tempfail: s.list.tempfail}
	}
	values := c.evaluate(s, a.addrs)
	if len(values) == 0 {
		return nil, nil
	}
	// The listing stands without its reason: a failed TXT lookup only
	// leaves the text empty.
	t, _ := c.lookup(ctx, s.name, dns.TypeTXT)
	return c.hit(s, values, t.text), nil
}

func (c *Checker) hit(s *slot, values []netip.Addr, text string) *Hit {
	return &Hit{Zone: s.list.Zone, Key: s.key, Values: values, Text: text, Weight: s.list.Weight}
}

// evaluate returns the A records that are a listing in s's list. Records
// that can never be a listing are reported as a configuration problem.
func (c *Checker) evaluate(s *slot, addrs []netip.Addr) []netip.Addr {
	var values, bogus []netip.Addr
	for _, a := range addrs {
		if !a.Is4() || !listingCode(v4(a)) {
			bogus = append(bogus, a)
			continue
		}
		if s.list.matches(v4(a)) {
			values = append(values, a)
		}
	}
	if len(bogus) > 0 {
		c.reportBogus(s, bogus)
	}
	return values
}

func (l *compiledList) matches(v uint32) bool {
	if len(l.match) == 0 {
		return true
	}
	for _, m := range l.match {
		if m.matches(v) {
			return true
		}
	}
	return false
}

// reportBogus writes to the paniclog, at most once per error interval per
// zone: a public resolver or an over-quota account answers every query so.
func (c *Checker) reportBogus(s *slot, bogus []netip.Addr) {
	now := time.Now()
	c.panicMu.Lock()
	last, seen := c.lastPanic[s.list.Zone]
	if seen && now.Sub(last) < c.errorInterval {
		c.panicMu.Unlock()
		return
	}
	c.lastPanic[s.list.Zone] = now
	c.panicMu.Unlock()
	codes := make([]string, len(bogus))
	for i, a := range bogus {
		codes[i] = a.String()
	}
	c.panicf(fmt.Sprintf("DNS list lookup for %s at %s returned %s; not a listing (rate limited or public resolver?)",
		s.key, s.list.Zone, strings.Join(codes, ", ")))
}

// lookup answers name/qtype from the cache, from an exchange already in
// flight, or from a new one. The exchange runs under its own timeout, so a
// session that gives up does not fail the others waiting for it.
func (c *Checker) lookup(ctx context.Context, name string, qtype uint16) (answer, error) {
	k := cacheKey{name, qtype}
	c.mu.Lock()
	if a, ok := c.cache.get(k, time.Now()); ok {
		c.mu.Unlock()
		return a, nil
	}
	// Joined or started under mu: a flight caches its answer under mu
	// before it ends, so a miss here means it has not ended yet.
	ch := c.flights.DoChan(name+" "+dnsclient.TypeString(qtype), func() (any, error) {
		return c.fly(context.WithoutCancel(ctx), k)
	})
	c.mu.Unlock()
	select {
	case r := <-ch:
		if r.Err != nil {
			return answer{}, r.Err
		}
		return r.Val.(answer), nil
	case <-ctx.Done():
		return answer{}, fmt.Errorf("no answer to %s %s: %w", strings.TrimSuffix(name, "."), dns.TypeToString[qtype], ctx.Err())
	}
}

// fly asks one question for every session waiting on it, and caches the
// answer.
func (c *Checker) fly(ctx context.Context, k cacheKey) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if a, ok := c.fromShared(ctx, k, time.Now()); ok {
		c.mu.Lock()
		c.cache.put(k, a, time.Now())
		c.mu.Unlock()
		return a, nil
	}
	a, err := c.exchange(ctx, k.name, k.qtype)
	if err == nil {
		now := time.Now()
		c.mu.Lock()
		c.cache.put(k, a, now)
		c.mu.Unlock()
		c.toShared(ctx, k, a, now)
	}
	return a, err
}

// Wait returns the verdict once every list has answered, or what is known
// when ctx ends (the lists still running then are ListErrors). It may be
// called more than once and from several goroutines; the Result's slices
// are shared and must not be modified.
func (p *Pending) Wait(ctx context.Context) Result {
	select {
	case <-p.done:
	case <-ctx.Done():
		// Both may be ready; a complete answer beats a partial one.
		select {
		case <-p.done:
		default:
			return p.collect(ctx.Err())
		}
	}
	p.once.Do(func() { p.result = p.collect(nil) })
	return p.result
}

// collect builds the Result from the slots; unsettled slots become
// ListErrors carrying cause.
func (p *Pending) collect(cause error) Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	var r Result
	for _, s := range p.slots {
		switch {
		case !s.settled:
			r.Errors = append(r.Errors, ListError{Zone: s.list.Zone, Key: s.key,
				Err: fmt.Errorf("gave up waiting: %w", cause), Tempfail: s.list.tempfail})
		case s.hit != nil:
			r.Hits = append(r.Hits, *s.hit)
			r.Score += s.hit.Weight
		case s.err != nil:
			r.Errors = append(r.Errors, *s.err)
		}
	}
	return r
}

package callout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"mxgate/dnsclient"
	"mxgate/event"
	"mxgate/hints"
	"mxgate/state"
)

// Options configure a Checker. They are taken as given: config fills and
// checks every value (the [callout] section, the hostname, the resolvers).
type Options struct {
	Hostname           string        // EHLO name
	Resolvers          []string      // "IP:PORT", asked in order
	Port               int           // SMTP port probed on the MX hosts
	MailFrom           string        // "" = MAIL FROM:<> ; else e.g. postmaster@hostname (Exim use_postmaster)
	Random             bool          // also probe a random local part first; a domain accepting it "accepts everything"
	Postmaster         bool          // the domain must accept postmaster@domain
	DeferOK            bool          // unknown → accept (the gateway reads it from Result)
	Timeout            time.Duration // per connect / SMTP command / DNS exchange
	Deadline           time.Duration // total per probe, all MX hosts and DNS included
	CacheFile          string        // bbolt file, e.g. data_dir/db/callout.db; "" = memory only
	Shared             state.Store   // the gateways' shared store ([state] url = Redis), records under "callout:"; nil: none
	CacheSize          int           // max records kept, oldest stored evicted first
	PositiveTTL        time.Duration // address accepted
	NegativeTTL        time.Duration // address refused
	PerHostConcurrency int           // probes at once to one MX host address; 0 = no limit
	PerHostRate        float64       // probes per second to one MX host address, after a burst of PerHostBurst; 0 = no limit
	Log                func(text string)
	Bus                *event.Bus // a DNSLookup event per MX and address question; nil: none
}

// The lifetimes of the domain records, which speak for every address of
// a domain (Exim's callout_domain_positive_expire and
// callout_domain_negative_expire), and of "the domain's MX hosts are
// unreachable".
const (
	DomainPositiveTTL = 7 * 24 * time.Hour // random/postmaster accepted
	DomainNegativeTTL = 3 * time.Hour      // random/postmaster/MAIL FROM refused
	UnreachableTTL    = 5 * time.Minute
)

// PerHostBurst is how many probes one MX host may get at once before
// the rate applies.
const PerHostBurst = 20

// Verdict is what a callout says about a sender. The zero value is
// Unknown, so a Result nobody filled in never accepts.
type Verdict int

const (
	Unknown Verdict = iota // no definite answer: 4xx, timeouts, unreachable, DNS failure
	Accept                 // the sender's domain accepted RCPT TO:<sender> (or accepts everything)
	Reject                 // refused: 5xx to RCPT, null MX, no such domain, postmaster refused
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Result is the outcome of one callout, shared by every session that
// asked about the address.
type Result struct {
	Verdict Verdict
	Reply   string // the remote server's own reply for Reject ("550 5.1.1 <a@b>: no such user"), or why Unknown ("all MX hosts timed out")
	Host    string // "mx.example.test [192.0.2.1]" that gave the answer; "" when DNS alone decided
	Cached  bool
}

// Checker runs callouts for every SMTP session of the gateway: its cache,
// single flight and host limits are shared.
type Checker struct {
	o     Options
	dns   *dnsclient.Client
	cache *hints.Cache
	hosts *hostLimits

	// mu guards closed, and orders a cache miss against a flight ending
	// (its records are cached under mu before it ends), so that an
	// address is never probed twice at once.
	mu      sync.Mutex
	flights singleflight.Group
	closed  bool

	base context.Context // cancelled by Close: in-flight probes stop
	stop context.CancelFunc
	wg   sync.WaitGroup // the Pendings still waiting for a flight
}

// Pending is a callout in progress (or already decided).
type Pending struct {
	done chan struct{}
	res  Result
}

// New opens (creating its directory) or creates the cache file and loads
// its unexpired records.
func New(o Options) (*Checker, error) {
	if o.Log == nil {
		o.Log = func(string) {}
	}
	client, err := dnsclient.New(o.Resolvers, o.Timeout, dnsclient.WithBus(o.Bus))
	if err != nil {
		return nil, fmt.Errorf("callout: %w", err)
	}
	maxTTL := max(o.PositiveTTL, o.NegativeTTL, DomainPositiveTTL, DomainNegativeTTL, UnreachableTTL)
	ca, err := hints.Open(hints.Options{
		File: o.CacheFile, Bucket: bucket, Size: o.CacheSize, MaxTTL: maxTTL,
		MaxVerdict: int(Reject), Log: o.Log, Shared: o.Shared, Prefix: sharedPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("callout: %w", err)
	}
	c := &Checker{
		o:     o,
		dns:   client,
		cache: ca,
		hosts: newHostLimits(o.PerHostConcurrency, o.PerHostRate, PerHostBurst),
	}
	c.base, c.stop = context.WithCancel(context.Background())
	return c, nil
}

// Close stops the probes in flight (their waiters get Unknown), waits for
// them and closes the cache file.
func (c *Checker) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	return c.cache.Close()
}

// Start begins the callout for sender (never the null sender) and returns
// at once. A cached answer, or a probe another session already started for
// the address, is shared. The probe runs under Options.Deadline, detached
// from ctx's cancellation: other sessions may be waiting for it.
func (c *Checker) Start(ctx context.Context, sender string) *Pending {
	a, err := parseAddress(sender)
	if err != nil {
		return decided(Result{Verdict: Reject, Reply: err.Error()})
	}
	c.mu.Lock()
	r, ok := c.cached(a)
	c.mu.Unlock()
	if ok {
		return decided(r)
	}
	// Not in memory: what another gateway learnt is brought in (the
	// shared store, if any) outside mu, since it waits for the network.
	c.cache.Fill(ctx, c.keys(a)...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cached(a); ok {
		return decided(r)
	}
	if c.closed {
		return decided(Result{Verdict: Unknown, Reply: "callout checker is shut down"})
	}
	detached := context.WithoutCancel(ctx)
	ch := c.flights.DoChan(a.key, func() (any, error) { return c.run(detached, a), nil })
	p := &Pending{done: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		p.res = (<-ch).Val.(Result)
		close(p.done)
	}()
	return p
}

func decided(r Result) *Pending {
	p := &Pending{done: make(chan struct{}), res: r}
	close(p.done)
	return p
}

// Wait returns the callout's Result, or Unknown when ctx ends first (the
// probe goes on and its answer is still cached). Safe to call more than
// once and from several goroutines.
func (p *Pending) Wait(ctx context.Context) Result {
	select {
	case <-p.done:
		return p.res
	default:
	}
	select {
	case <-p.done:
		return p.res
	case <-ctx.Done():
		return Result{Verdict: Unknown, Reply: fmt.Sprintf("callout not finished: %v", context.Cause(ctx))}
	}
}

// run is one flight: the probe, under Options.Deadline and Close.
func (c *Checker) run(ctx context.Context, a address) Result {
	ctx, cancel := context.WithTimeoutCause(ctx, c.o.Deadline, errDeadline)
	stop := context.AfterFunc(c.base, cancel)
	res, recs := c.probe(ctx, a)
	stop()
	cancel()
	// Cached under mu before the flight ends: a Start before this joins
	// the flight, one after it finds the cache; neither probes again.
	c.mu.Lock()
	c.cache.Add(recs...)
	c.mu.Unlock()
	return res
}

var errDeadline = errors.New("callout deadline reached")

// cached answers from the cache, domain records first: they speak for
// every address of the domain. Called with c.mu held.
func (c *Checker) cached(a address) (Result, bool) {
	now := time.Now()
	from := func(r hints.Record) Result {
		return Result{Verdict: Verdict(r.Verdict), Reply: r.Reply, Host: r.Host, Cached: true}
	}
	if r, _, ok := c.lookup(keyUnreachable+a.domain, now); ok {
		return from(r), true
	}
	if r, v, ok := c.lookup(keyMailFrom+a.domain, now); ok && v == Reject {
		return from(r), true
	}
	if c.o.Postmaster {
		if r, v, ok := c.lookup(keyPostmaster+a.domain, now); ok && v == Reject {
			return from(r), true
		}
	}
	if c.o.Random {
		if r, v, ok := c.lookup(keyRandom+a.domain, now); ok && v == Accept {
			return from(r), true
		}
	}
	if r, _, ok := c.lookup(keyAddress+a.key, now); ok {
		return from(r), true
	}
	return Result{}, false
}

// address is a sender split for probing.
type address struct {
	key    string // local@domain, domain lower case: the cache and flight key
	rcpt   string // as sent in RCPT TO:<>, local part quoted when needed
	domain string
}

// parseAddress splits sender at its last @. A sender that cannot be
// probed is refused: the gateway should have refused it first.
func parseAddress(sender string) (address, error) {
	at := strings.LastIndexByte(sender, '@')
	if at <= 0 || at == len(sender)-1 {
		return address{}, fmt.Errorf("sender <%s> is not local@domain", sender)
	}
	local := sender[:at]
	domain := strings.ToLower(strings.TrimSuffix(sender[at+1:], "."))
	if strings.ContainsAny(sender, "\r\n\x00") {
		return address{}, fmt.Errorf("sender %q contains CR, LF or NUL", sender)
	}
	if _, ok := dns.IsDomainName(domain); !ok || strings.HasPrefix(domain, "[") || strings.ContainsAny(domain, " \\\"()<>") || !strings.Contains(domain, ".") {
		return address{}, fmt.Errorf("sender <%s>: %q is not a domain that has mail servers", sender, domain)
	}
	key := local + "@" + domain
	return address{key: key, rcpt: quoteLocal(local) + "@" + domain, domain: domain}, nil
}

// quoteLocal re-quotes a local part that is not a dot-atom (go-smtp's
// server hands quoted local parts over unquoted).
func quoteLocal(local string) string {
	if isDotAtom(local) {
		return local
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if local[i] == '"' || local[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch >= 0x80:
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", ch) >= 0:
		default:
			return false
		}
	}
	return true
}

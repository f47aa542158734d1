package callout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"mxgate/rbl"
)

// Options configure a Checker; zero values take the defaults below.
type Options struct {
	Hostname           string        // EHLO name; "" = os.Hostname()
	Resolvers          []string      // "127.0.0.1:53" / bare IP = port 53; empty = /etc/resolv.conf
	Port               int           // SMTP port probed on the MX hosts (default 25)
	MailFrom           string        // "" = MAIL FROM:<> ; else e.g. postmaster@hostname (Exim use_postmaster)
	Random             bool          // also probe a random local part first; a domain accepting it "accepts everything"
	Postmaster         bool          // the domain must accept postmaster@domain
	DeferOK            bool          // unknown → accept (the gateway reads it from Result)
	Timeout            time.Duration // per connect / SMTP command (default 10s)
	Deadline           time.Duration // total per probe, all MX hosts and DNS included (default 30s)
	CacheFile          string        // bbolt file, e.g. data_dir/db/callout.db; "" = memory only
	CacheSize          int           // max records kept, oldest evicted (default 100000)
	PositiveTTL        time.Duration // address accepted (default 24h)
	NegativeTTL        time.Duration // address refused (default 2h)
	DomainPositiveTTL  time.Duration // random/postmaster accepted (default 7d)
	DomainNegativeTTL  time.Duration // random/postmaster/MAIL FROM refused (default 3h)
	UnreachableTTL     time.Duration // "domain's MX unreachable" (default 5m)
	PerHostConcurrency int           // probes at once to one MX host address (default 2)
	PerHostRate        float64       // probes per second to one MX host address (default 5, after a burst of PerHostBurst)
	Log                func(text string)
}

// Defaults applied by New to zero Options fields.
const (
	DefaultPort               = 25
	DefaultTimeout            = 10 * time.Second
	DefaultDeadline           = 30 * time.Second
	DefaultCacheSize          = 100000
	DefaultPositiveTTL        = 24 * time.Hour
	DefaultNegativeTTL        = 2 * time.Hour
	DefaultDomainPositiveTTL  = 7 * 24 * time.Hour
	DefaultDomainNegativeTTL  = 3 * time.Hour
	DefaultUnreachableTTL     = 5 * time.Minute
	DefaultPerHostConcurrency = 4
	DefaultPerHostRate        = 5.0
	// PerHostBurst is how many probes one MX host may get at once before
	// the rate applies.
	PerHostBurst = 20
)

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
	res   *rbl.Resolver
	cache *cache
	hosts *hostLimits

	// mu guards flights and closed, and orders a cache miss against a
	// flight ending so that an address is never probed twice at once.
	mu      sync.Mutex
	flights map[string]*Pending
	closed  bool

	base context.Context // cancelled by Close: in-flight probes stop
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Pending is a callout in progress (or already decided).
type Pending struct {
	done chan struct{}
	res  Result
}

// New validates o, opens (creating its directory) or creates the cache
// file and loads its unexpired records.
func New(o Options) (*Checker, error) {
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("callout: port %d out of range", o.Port)
	}
	for _, d := range []time.Duration{o.Timeout, o.Deadline, o.PositiveTTL, o.NegativeTTL, o.DomainPositiveTTL, o.DomainNegativeTTL, o.UnreachableTTL} {
		if d < 0 {
			return nil, fmt.Errorf("callout: negative timeout or TTL %v", d)
		}
	}
	if o.CacheSize < 0 || o.PerHostConcurrency < 0 || o.PerHostRate < 0 {
		return nil, fmt.Errorf("callout: negative cache size %d, per-host concurrency %d or rate %g", o.CacheSize, o.PerHostConcurrency, o.PerHostRate)
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("callout: no EHLO hostname configured and none from the system: %w", err)
		}
		o.Hostname = h
	}
	if _, ok := dns.IsDomainName(o.Hostname); !ok || strings.ContainsAny(o.Hostname, " \r\n\t") {
		return nil, fmt.Errorf("callout: EHLO hostname %q is not a domain name", o.Hostname)
	}
	if strings.ContainsAny(o.MailFrom, "\r\n<> ") {
		return nil, fmt.Errorf("callout: MAIL FROM address %q contains a space, CR, LF or angle bracket", o.MailFrom)
	}
	o.Port = orDefault(o.Port, DefaultPort)
	o.Timeout = orDefault(o.Timeout, DefaultTimeout)
	o.Deadline = orDefault(o.Deadline, DefaultDeadline)
	o.CacheSize = orDefault(o.CacheSize, DefaultCacheSize)
	o.PositiveTTL = orDefault(o.PositiveTTL, DefaultPositiveTTL)
	o.NegativeTTL = orDefault(o.NegativeTTL, DefaultNegativeTTL)
	o.DomainPositiveTTL = orDefault(o.DomainPositiveTTL, DefaultDomainPositiveTTL)
	o.DomainNegativeTTL = orDefault(o.DomainNegativeTTL, DefaultDomainNegativeTTL)
	o.UnreachableTTL = orDefault(o.UnreachableTTL, DefaultUnreachableTTL)
	o.PerHostConcurrency = orDefault(o.PerHostConcurrency, DefaultPerHostConcurrency)
	o.PerHostRate = orDefault(o.PerHostRate, DefaultPerHostRate)
	if o.Log == nil {
		o.Log = func(string) {}
	}
	res, err := rbl.NewResolver(o.Resolvers, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("callout: %w", err)
	}
	ca, err := openCache(o.CacheFile, o.CacheSize, o.Log)
	if err != nil {
		return nil, err
	}
	c := &Checker{
		o:       o,
		res:     res,
		cache:   ca,
		hosts:   newHostLimits(o.PerHostConcurrency, o.PerHostRate, PerHostBurst),
		flights: make(map[string]*Pending),
	}
	c.base, c.stop = context.WithCancel(context.Background())
	return c, nil
}

func orDefault[T int | float64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Close stops the probes in flight (their waiters get Unknown), waits for
// them and closes the cache file.
func (c *Checker) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	return c.cache.close()
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
	defer c.mu.Unlock()
	if p, ok := c.flights[a.key]; ok {
		return p
	}
	if r, ok := c.cached(a); ok {
		return decided(r)
	}
	if c.closed {
		return decided(Result{Verdict: Unknown, Reply: "callout checker is shut down"})
	}
	p := &Pending{done: make(chan struct{})}
	c.flights[a.key] = p
	c.wg.Add(1)
	go c.run(context.WithoutCancel(ctx), p, a)
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

func (c *Checker) run(ctx context.Context, p *Pending, a address) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeoutCause(ctx, c.o.Deadline, errDeadline)
	stop := context.AfterFunc(c.base, cancel)
	res, recs := c.probe(ctx, a)
	stop()
	cancel()
	// Cache first, then end the flight: a Start in between joins the
	// flight, one after it finds the cache; neither probes again.
	c.cache.put(time.Now(), recs...)
	p.res = res
	c.mu.Lock()
	delete(c.flights, a.key)
	c.mu.Unlock()
	close(p.done)
}

var errDeadline = errors.New("callout deadline reached")

// cached answers from the cache, domain records first: they speak for
// every address of the domain. Called with c.mu held.
func (c *Checker) cached(a address) (Result, bool) {
	now := time.Now()
	from := func(r record) Result {
		return Result{Verdict: r.Verdict, Reply: r.Reply, Host: r.Host, Cached: true}
	}
	if r, ok := c.cache.get(keyUnreachable+a.domain, now); ok {
		return from(r), true
	}
	if r, ok := c.cache.get(keyMailFrom+a.domain, now); ok && r.Verdict == Reject {
		return from(r), true
	}
	if c.o.Postmaster {
		if r, ok := c.cache.get(keyPostmaster+a.domain, now); ok && r.Verdict == Reject {
			return from(r), true
		}
	}
	if c.o.Random {
		if r, ok := c.cache.get(keyRandom+a.domain, now); ok && r.Verdict == Accept {
			return from(r), true
		}
	}
	if r, ok := c.cache.get(keyAddress+a.key, now); ok {
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

// Passes says whether the session lets the sender through on r: accepted,
// or unknown with Options.DeferOK (Exim's defer_ok).
func (c *Checker) Passes(r Result) bool {
	return r.Verdict == Accept || r.Verdict == Unknown && c.o.DeferOK
}

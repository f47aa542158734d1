// Package rcptverify owns recipient verification at RCPT: is there such a
// user at the store a relay domain's mail goes to? It asks the store
// itself by LMTP or SMTP RCPT TO (Exim's verify = recipient/callout), a
// recipients list (Postfix's relay_recipient_maps) or Dovecot's
// auth-userdb socket, caches definite answers (package hints), makes one
// lookup per address however many sessions ask, and keeps the connections
// to a store few and bounded. Its check refuses unknown users with
// 550 5.1.1 at RCPT, so that mxgate never accepts mail it would have to
// bounce to a forged sender.
package rcptverify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"mxgate/hints"
	"mxgate/state"
)

// Sources of Store.Source.
const (
	SourceNone    = "none"
	SourceCallout = "callout"
	SourceFile    = "file"
	SourceDovecot = "dovecot"
)

// Target is where a store takes its mail; its fields are config.Target's
// (and deliver.Target's), in the same order, so one converts to the other.
type Target struct {
	Scheme string // "smtp", "lmtp", "lmtp+unix" or "maildir"
	Host   string
	Port   int
	Path   string
}

// STARTTLS modes of Store.StartTLS, the route's starttls.
const (
	TLSOpportunistic = "opportunistic" // if the store offers it
	TLSNone          = "none"
	TLSRequired      = "required" // never ask in clear: no TLS, no lookup
)

// Store is the mail store of a recipient domain as verification sees it.
type Store struct {
	Name      string // the route's name, for logs
	Source    string // SourceNone, SourceCallout, SourceFile or SourceDovecot
	Path      string // file: the recipients list; dovecot: the auth-userdb socket
	Target    Target // callout: the store asked
	Delimiter string // characters that start a sub-address ("+"); "" for none
	Lowercase bool   // local parts are looked up lower-cased
	// Callout: the route's TLS and connect timeout, as delivery to the
	// store uses them (a unix socket never has TLS).
	StartTLS       string // TLSOpportunistic, TLSNone or TLSRequired
	TLSVerify      bool   // verify the store's certificate
	ConnectTimeout time.Duration
}

// Options configure a Verifier. They are taken as given: config fills and
// checks every value.
type Options struct {
	// Store is the store of a recipient domain; false for a domain
	// whose recipients are never verified (not a relay domain).
	Store       func(domain string) (Store, bool)
	Hostname    string        // LHLO/EHLO name of callouts
	DeferOK     bool          // no answer → accept (the check reads it)
	Timeout     time.Duration // per lookup, connect included (a callout connects within its Store.ConnectTimeout too)
	IdleTimeout time.Duration // an open connection to a store unused this long is closed
	PositiveTTL time.Duration // "user exists" cached
	NegativeTTL time.Duration // "user unknown" cached
	CacheFile   string        // bbolt file; "" = memory only
	Shared      state.Store   // the gateways' shared store ([state] url = Redis), records under "rcpt:"; nil: none
	CacheSize   int
	// MaxConnections bounds the lookups at once, and so the open
	// connections, to one store.
	MaxConnections int
	// RootCAs verifies a store's certificate under TLSVerify; nil = the
	// system's roots.
	RootCAs *x509.CertPool
	Log     func(text string) // mainlog
	// Panic is paniclog: a recipients file that does not parse, a store
	// that refuses our callouts.
	Panic func(text string)
}

// Verdict is what a lookup says of a recipient. The zero value is
// Defer, so a Result nobody filled in never accepts nor refuses.
type Verdict int

const (
	Defer    Verdict = iota // no definite answer: the store is down, slow, or said 4xx
	Found                   // the user exists
	NotFound                // no such user
)

func (v Verdict) String() string {
	switch v {
	case Defer:
		return "defer"
	case Found:
		return "found"
	case NotFound:
		return "not found"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Result is the outcome of one lookup, shared by every session that
// asked about the address.
type Result struct {
	Verdict Verdict
	Key     string // the address looked up: sub-address stripped, case folded per the store
	// Detail is the store's own answer or why there is none, for logs
	// and -bh; it never goes into a reply to the client.
	Detail string
	Cached bool
}

// Verifier answers lookups for every SMTP session of the gateway: its
// cache, single flight and connections to the stores are shared.
type Verifier struct {
	o     Options
	cache *hints.Cache

	// mu orders a cache miss against a flight ending (its answer is
	// cached under mu before it ends), so an address is never looked up
	// twice at once, and guards the per-store state.
	mu       sync.Mutex
	flights  singleflight.Group
	callouts map[calloutKey]*calloutStore
	dovecots map[string]*dovecotStore
	files    map[string]*recipientsFile
	closed   bool

	base context.Context // cancelled by Close: lookups in flight stop
	stop context.CancelFunc
	wg   sync.WaitGroup // the janitor and the flights
}

// bucket is the records' bucket in the cache file.
const bucket = "recipients"

// New opens the cache (creating its file) and starts the janitor that
// closes idle connections.
func New(o Options) (*Verifier, error) {
	if o.Log == nil {
		o.Log = func(string) {}
	}
	if o.Panic == nil {
		o.Panic = o.Log
	}
	ca, err := hints.Open(hints.Options{
		File: o.CacheFile, Bucket: bucket, Size: o.CacheSize,
		MaxTTL: max(o.PositiveTTL, o.NegativeTTL), MaxVerdict: int(NotFound), Log: o.Log,
		Shared: o.Shared, Prefix: "rcpt:",
	})
	if err != nil {
		return nil, fmt.Errorf("recipient verification: %w", err)
	}
	v := &Verifier{
		o:        o,
		cache:    ca,
		callouts: make(map[calloutKey]*calloutStore),
		dovecots: make(map[string]*dovecotStore),
		files:    make(map[string]*recipientsFile),
	}
	v.base, v.stop = context.WithCancel(context.Background())
	v.wg.Go(v.janitor)
	return v, nil
}

// Close stops the lookups in flight and waits for them, closes every
// connection to the stores and the cache file.
func (v *Verifier) Close() error {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.stop()
	v.wg.Wait()
	v.mu.Lock()
	for _, s := range v.callouts {
		s.pool.close()
	}
	for _, s := range v.dovecots {
		s.pool.close()
	}
	v.mu.Unlock()
	return v.cache.Close()
}

// janitor closes the connections left idle past IdleTimeout, so a store
// does not keep a session open for nothing.
func (v *Verifier) janitor() {
	// The floor keeps a tiny idle_timeout from making the janitor spin.
	every := max(v.o.IdleTimeout/2, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-v.base.Done():
			return
		case now := <-t.C:
			v.mu.Lock()
			for _, s := range v.callouts {
				s.pool.sweep(now)
			}
			for _, s := range v.dovecots {
				s.pool.sweep(now)
			}
			v.mu.Unlock()
		}
	}
}

// Key is the address looked up for local@domain at st: the sub-address
// after the first of st's delimiter characters dropped, the local part
// lower-cased when the store does so, the domain always.
func Key(st Store, local, domain string) string {
	if st.Delimiter != "" {
		if i := strings.IndexAny(local, st.Delimiter); i > 0 {
			local = local[:i]
		}
	}
	if st.Lowercase {
		local = strings.ToLower(local)
	}
	return local + "@" + strings.ToLower(domain)
}

// Lookup asks st about local@domain and waits for the answer until ctx
// ends (the lookup goes on, bounded by Options.Timeout, and its answer is
// still cached).
func (v *Verifier) Lookup(ctx context.Context, st Store, local, domain string) Result {
	key := Key(st, local, domain)
	if st.Source == SourceFile {
		// The list is in memory: nothing to cache or share.
		return v.file(st.Path).lookup(key, st.Lowercase)
	}
	cacheKey := st.Source + ":" + storeID(st) + ":" + key
	v.mu.Lock()
	r, ok := v.cache.Get(cacheKey, time.Now())
	v.mu.Unlock()
	if ok {
		return Result{Verdict: Verdict(r.Verdict), Key: key, Detail: r.Reply, Cached: true}
	}
	// Not in memory: what another gateway learnt is brought in (the
	// shared store, if any) outside mu, since it waits for the network.
	v.cache.Fill(ctx, cacheKey)
	v.mu.Lock()
	if r, ok := v.cache.Get(cacheKey, time.Now()); ok {
		v.mu.Unlock()
		return Result{Verdict: Verdict(r.Verdict), Key: key, Detail: r.Reply, Cached: true}
	}
	if v.closed {
		v.mu.Unlock()
		return Result{Verdict: Defer, Key: key, Detail: "recipient verification is shut down"}
	}
	detached := context.WithoutCancel(ctx)
	ch := v.flights.DoChan(cacheKey, func() (any, error) { return v.run(detached, st, key, cacheKey), nil })
	v.mu.Unlock()
	select {
	case r := <-ch:
		return r.Val.(Result)
	case <-ctx.Done():
		return Result{Verdict: Defer, Key: key, Detail: fmt.Sprintf("lookup not finished: %v", context.Cause(ctx))}
	}
}

// storeID names the store a record speaks for.
func storeID(st Store) string {
	if st.Source == SourceCallout {
		t := st.Target
		if t.Path != "" {
			return t.Scheme + ":" + t.Path
		}
		return fmt.Sprintf("%s:%s:%d", t.Scheme, t.Host, t.Port)
	}
	return st.Path
}

var errTimeout = errors.New("recipient verification timeout reached")

// run is one flight: the lookup, under Options.Timeout and Close; a
// definite answer is cached before the flight ends.
func (v *Verifier) run(ctx context.Context, st Store, key, cacheKey string) Result {
	// Counted under mu, before Close can see closed and wait.
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return Result{Verdict: Defer, Key: key, Detail: "recipient verification is shut down"}
	}
	v.wg.Add(1)
	v.mu.Unlock()
	defer v.wg.Done()
	ctx, cancel := context.WithTimeoutCause(ctx, v.o.Timeout, errTimeout)
	stop := context.AfterFunc(v.base, cancel)
	var res Result
	switch st.Source {
	case SourceCallout:
		res = v.callout(st).probe(ctx, key)
	case SourceDovecot:
		res = v.dovecot(st.Path).lookup(ctx, key)
	default:
		res = Result{Verdict: Defer, Detail: fmt.Sprintf("unknown source %q", st.Source)}
	}
	stop()
	cancel()
	res.Key = key
	if res.Verdict == Defer {
		// Store trouble is never cached: the next RCPT asks again.
		return res
	}
	now := time.Now()
	ttl := v.o.PositiveTTL
	if res.Verdict == NotFound {
		ttl = v.o.NegativeTTL
	}
	e := hints.Entry{Key: cacheKey, Rec: hints.Record{Verdict: int(res.Verdict), Reply: res.Detail, Stored: now, Expires: now.Add(ttl)}}
	v.mu.Lock()
	v.cache.Add(e)
	v.mu.Unlock()
	return res
}

// calloutKey is what makes two routes' callouts one store: the same
// target asked the same way.
type calloutKey struct {
	t         Target
	startTLS  string
	tlsVerify bool
	connect   time.Duration
}

func (v *Verifier) callout(st Store) *calloutStore {
	k := calloutKey{st.Target, st.StartTLS, st.TLSVerify, st.ConnectTimeout}
	return shared(&v.mu, v.callouts, k, func() *calloutStore { return newCalloutStore(st, v.o) })
}

func (v *Verifier) dovecot(path string) *dovecotStore {
	return shared(&v.mu, v.dovecots, path, func() *dovecotStore { return newDovecotStore(path, v.o) })
}

func (v *Verifier) file(path string) *recipientsFile {
	return shared(&v.mu, v.files, path, func() *recipientsFile { return &recipientsFile{path: path, panic: v.o.Panic} })
}

// shared is m's store for k, made by mk the first time, so the routes
// that name one store share it.
func shared[K comparable, S any](mu *sync.Mutex, m map[K]S, k K, mk func() S) S {
	mu.Lock()
	defer mu.Unlock()
	s, ok := m[k]
	if !ok {
		s = mk()
		m[k] = s
	}
	return s
}

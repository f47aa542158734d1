package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"mxgate/dane"
	"mxgate/dnsclient"
	"mxgate/event"
	"mxgate/mtasts"
)

// MXOptions configure the MX transport. They are taken as given: package
// config fills every one from [outbound] and checks it; a zero timeout
// means no timeout.
type MXOptions struct {
	Hostname  string   // EHLO name
	Resolvers []string // "IP:PORT": MX, A/AAAA, TXT (MTA-STS) and TLSA (DANE) lookups; DANE needs them to validate DNSSEC
	Port      int      // of the MX hosts: 25 (tests use another)
	// ConnectTimeout bounds one TCP connect (to an MX host or the
	// MTA-STS policy host); CommandTimeout one reply, one DNS lookup and
	// one MTA-STS policy lookup; DataTimeout one write of the body.
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
	// MaxPerDomain bounds the connections open at once to one recipient
	// domain; a delivery beyond it waits, as long as its context lets it.
	// 0 = no bound.
	MaxPerDomain int
	// IdleTimeout keeps a session open this long after a message, for the
	// next message to the same MX host and address, whatever its
	// recipient domain; 0 = none kept. MaxMessages is how many messages
	// one session carries; 0 = no bound.
	IdleTimeout time.Duration
	MaxMessages int
	MTASTS      string         // "off", "testing" (report, deliver anyway) or "enforce" (what the policy says)
	MTASTSPort  int            // HTTPS port of mta-sts.DOMAIN: 443 (tests use another)
	RootCAs     *x509.CertPool // verifies MX hosts under MTA-STS and the policy hosts; nil = the system's roots
	MTASTSCache string         // policy cache file (under data_dir/db); "" = memory only
	// Log writes what a delivery's results do not say: MTA-STS failures
	// in testing mode, policy lookups that failed. nil = none. It takes
	// the message ID, as mainlog.Logger.Main does.
	Log func(id, text string)
	// Bus gets a DNSLookup event per MX, address, MTA-STS and TLSA
	// question; nil emits nothing.
	Bus *event.Bus
}

// MTA-STS settings of MXOptions.MTASTS; any other is "off".
const (
	stsTesting = "testing"
	stsEnforce = "enforce"
)

// maxMXHosts bounds the MX hosts one domain's delivery tries: the
// timeouts bound the time, this the work a hostile zone can ask for.
const maxMXHosts = 10

// mxTransport delivers each recipient to the mail hosts of its domain.
type mxTransport struct {
	o     MXOptions
	dns   *dnsclient.Client
	sts   *mtasts.Client // nil when MTA-STS is off
	limit *domainLimit
	pool  *pool // per MX host address; MaxPerDomain bounds the sessions in use
}

// NewMX returns the transport that delivers to the Internet: each
// recipient domain's MX hosts in preference order (equal preferences in
// random order; no MX: the domain's own address, RFC 5321 5.1), each host's
// addresses in turn, one session per domain per message (domains in
// parallel), with opportunistic STARTTLS, required and verified where the
// domain's MTA-STS policy (enforce) or the MX host's DNSSEC-validated TLSA
// records (DANE, RFC 7672) say so. Its Name is "smtp", as Exim's
// remote_smtp.
func NewMX(o MXOptions) (Transport, error) {
	client, err := dnsclient.New(o.Resolvers, o.CommandTimeout, dnsclient.WithBus(o.Bus))
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	t := &mxTransport{o: o, dns: client, limit: &domainLimit{max: o.MaxPerDomain, slots: make(map[string]*slot)},
		pool: newPool(0, o.MaxMessages, o.IdleTimeout)}
	if o.MTASTS == stsTesting || o.MTASTS == stsEnforce {
		t.sts, err = mtasts.New(mtasts.Options{
			DNS:            client,
			Port:           o.MTASTSPort,
			RootCAs:        o.RootCAs,
			ConnectTimeout: o.ConnectTimeout,
			Timeout:        o.CommandTimeout,
			CachePath:      o.MTASTSCache,
			Log:            func(text string) { t.log("", text) },
		})
		if err != nil {
			return nil, fmt.Errorf("outbound: %w", err)
		}
	}
	return t, nil
}

func (t *mxTransport) Name() string { return "smtp" }

// Close ends the sessions kept open between messages.
func (t *mxTransport) Close(ctx context.Context) { t.pool.Close(ctx) }

func (t *mxTransport) log(id, text string) {
	if t.o.Log != nil {
		t.o.Log(id, text)
	}
}

// Deliver groups the recipients by domain and delivers each group in its
// own session, the groups at once; results come back in input order.
func (t *mxTransport) Deliver(ctx context.Context, m *Message) []Result {
	rs := results(m, "", Deferred, NoReason, "")
	byDomain := make(map[string][]int)
	var domains []string
	for i, r := range m.Recipients {
		_, domain, ok := splitAddr(r)
		domain = strings.ToLower(strings.TrimSuffix(domain, "."))
		_, isName := dns.IsDomainName(domain)
		switch {
		case !ok || domain == "":
			rs[i].Status, rs[i].Reason, rs[i].Err = Failed, Unroutable, "address has no domain to look up MX hosts for"
			continue
		case strings.HasPrefix(domain, "["):
			rs[i].Status, rs[i].Reason, rs[i].Err = Failed, Unroutable, "domain literals are not delivered to the Internet"
			continue
		case !isASCII(domain):
			// Its A-label would need IDNA tables (golang.org/x/text),
			// which the program does not carry.
			rs[i].Status, rs[i].Reason, rs[i].Err = Failed, Unroutable, "internationalized domain names are not delivered to the Internet: use the domain's A-label (xn--)"
			continue
		case !isName || checkAddr(domain) != nil || strings.ContainsAny(domain, " \\\"()<>;@"):
			rs[i].Status, rs[i].Reason, rs[i].Err = Failed, BadAddress, fmt.Sprintf("domain %q is not a valid domain name", domain)
			continue
		}
		if byDomain[domain] == nil {
			domains = append(domains, domain)
		}
		byDomain[domain] = append(byDomain[domain], i)
	}
	var wg sync.WaitGroup
	for _, d := range domains {
		wg.Go(func() { t.deliverDomain(ctx, m, d, byDomain[d], rs) })
	}
	wg.Wait()
	return rs
}

// MXPlan is where the MX transport would take a domain's mail now: its
// mail hosts in the order tried, each with its usable addresses, and the
// domain's MTA-STS policy. The transport delivers by it and -bt prints
// it, so the two agree.
type MXPlan struct {
	Domain   string
	Port     int      // of every host
	Implicit bool     // no MX records: the domain is its own mail host (RFC 5321 5.1)
	Hosts    []MXHost // preference order, equal preferences shuffled; at most 10
	// STS is the MTA-STS policy applied: "" (none, or mta_sts "off"),
	// "testing" (reported only: the policy's mode or ours) or "enforce".
	STS string
	// STSErr is a policy lookup that failed: the domain is delivered to
	// as if it had none (RFC 8461 5).
	STSErr error
	sts    stsPolicy
}

// MXHost is one mail host of a plan.
type MXHost struct {
	Name   string       // lower case, no final dot
	Pref   uint16       // MX preference; 0 for the implicit MX
	Addrs  []netip.Addr // usable addresses, IPv4 then IPv6
	Secure bool         // both address answers were DNSSEC-validated (DANE applies)
	Err    error        // why there is no usable address: the host is skipped
	// Unlisted: the MTA-STS policy does not name the host; under
	// "enforce" it is skipped.
	Unlisted bool
}

// PlanError is why a domain has no mail host to try: the status, reason
// and text its recipients' results get.
type PlanError struct {
	Status Status
	Reason Reason
	Text   string
}

func (e *PlanError) Error() string { return e.Text }

// Planner is the MX transport's planning, for -bt.
type Planner interface {
	Plan(ctx context.Context, domain string) (*MXPlan, error)
}

// Plan looks up where mail for domain (lower case, no final dot) would go
// now: its MX hosts, their addresses (every host at once) and its MTA-STS
// policy. The error, a *PlanError, is a domain with no host to try: it
// does not exist, has a null MX, cannot be looked up now, or its enforced
// MTA-STS policy allows none of its hosts.
func (t *mxTransport) Plan(ctx context.Context, domain string) (*MXPlan, error) {
	hosts, implicit, perr := t.mxHosts(ctx, domain)
	if perr != nil {
		return nil, perr
	}
	p := &MXPlan{Domain: domain, Port: t.o.Port, Implicit: implicit, Hosts: hosts}
	p.sts, p.STSErr = t.policy(ctx, domain)
	switch {
	case p.sts.enforce:
		p.STS = stsEnforce
	case p.sts.p != nil:
		p.STS = stsTesting
	}
	listed := 0
	var wg sync.WaitGroup
	for i := range p.Hosts {
		h := &p.Hosts[i]
		if p.sts.p != nil && !p.sts.p.Match(h.Name) {
			h.Unlisted = true
		} else {
			listed++
		}
		if h.Unlisted && p.sts.enforce {
			continue
		}
		wg.Go(func() { h.Addrs, h.Secure, h.Err = t.addrs(ctx, h.Name) })
	}
	wg.Wait()
	if p.sts.enforce && listed == 0 {
		names := make([]string, len(hosts))
		for i, h := range hosts {
			names[i] = h.Name
		}
		return nil, &PlanError{Deferred, PolicyRefused, fmt.Sprintf("MTA-STS policy of %s (enforce) allows none of its MX hosts (%s)", domain, strings.Join(names, ", "))}
	}
	return p, nil
}

// deliverDomain delivers m to the recipients idx of domain, writing their
// rs entries and no others.
func (t *mxTransport) deliverDomain(ctx context.Context, m *Message, domain string, idx []int, rs []Result) {
	set := func(e PlanError) {
		for _, i := range idx {
			rs[i].Status, rs[i].Reason, rs[i].Err = e.Status, e.Reason, e.Text
		}
	}
	release, err := t.limit.acquire(ctx, domain)
	if err != nil {
		set(PlanError{Deferred, Abandoned, "delivery abandoned: " + context.Cause(ctx).Error()})
		return
	}
	defer release()

	plan, err := t.Plan(ctx, domain)
	if err != nil {
		set(*err.(*PlanError))
		return
	}
	if plan.STSErr != nil {
		t.log(m.ID, plan.STSErr.Error()+": delivering without MTA-STS")
	}
	if !plan.sts.enforce {
		for _, h := range plan.Hosts {
			if h.Unlisted {
				t.log(m.ID, fmt.Sprintf("MTA-STS policy of %s (testing) does not list MX host %s: delivering anyway", domain, h.Name))
			}
		}
	}
	pending := slices.Clone(idx)
	var noAddr []string
	tried := false
	for _, h := range plan.Hosts {
		if h.Unlisted && plan.sts.enforce {
			continue
		}
		if h.Err != nil {
			noAddr = append(noAddr, h.Err.Error())
			continue
		}
		tp, err := t.tlsFor(ctx, m.ID, domain, h.Name, h.Secure, plan.sts)
		if err != nil {
			noAddr = append(noAddr, err.Error())
			continue
		}
		for _, ip := range h.Addrs {
			tried = true
			pending = t.session(ctx, m, h.Name, ip, tp, pending, rs)
			if len(pending) == 0 || ctx.Err() != nil {
				return
			}
		}
	}
	if !tried {
		set(PlanError{Deferred, Unroutable, fmt.Sprintf("no MX host of %s has a usable address: %s", domain, strings.Join(noAddr, "; "))})
	}
}

// session delivers to the pending recipients (indexes into rs) at one
// address, and returns those left for the next address: the ones the
// session, not their own RCPT reply, deferred.
func (t *mxTransport) session(ctx context.Context, m *Message, host string, ip netip.Addr, tp tlsPolicy, pending []int, rs []Result) []int {
	sub := *m
	sub.Recipients = make([]string, len(pending))
	for j, i := range pending {
		sub.Recipients[j] = m.Recipients[i]
	}
	p := &peer{
		network: "tcp",
		addr:    net.JoinHostPort(ip.String(), strconv.Itoa(t.o.Port)),
		host:    host,
		o: Options{
			Hostname:       t.o.Hostname,
			ConnectTimeout: t.o.ConnectTimeout,
			CommandTimeout: t.o.CommandTimeout,
			DataTimeout:    t.o.DataTimeout,
		},
		tls:  tp,
		pool: t.pool,
	}
	got, own := p.deliver(ctx, &sub)
	var next []int
	for j, i := range pending {
		rs[i] = got[j]
		if got[j].Status == Deferred && !own[j] && got[j].Reason != Abandoned && got[j].Reason != LocalError {
			next = append(next, i)
		}
	}
	return next
}

// mxHosts returns domain's mail hosts in the order to try them (implicit:
// the domain itself, for want of MX records), or why there are none.
func (t *mxTransport) mxHosts(ctx context.Context, domain string) (hosts []MXHost, implicit bool, perr *PlanError) {
	a, err := t.lookup(ctx, domain, dns.TypeMX)
	if err != nil {
		why := ConnectFailed
		var de *dnsclient.Error
		if errors.As(err, &de) && de.Timeout() {
			why = Timeout
		}
		return nil, false, &PlanError{Deferred, why, fmt.Sprintf("DNS lookup of the MX hosts of %s failed: %s", domain, dnsclient.Reason(err))}
	}
	if a.NXDomain {
		return nil, false, &PlanError{Failed, Unroutable, fmt.Sprintf("domain %s does not exist (DNS: NXDOMAIN)", domain)}
	}
	nulls := 0
	seen := make(map[string]bool)
	for _, rr := range a.Records {
		mx := rr.(*dns.MX)
		name := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if name == "" {
			nulls++
			continue
		}
		if _, ok := dns.IsDomainName(name); !ok || seen[name] {
			continue
		}
		seen[name] = true
		hosts = append(hosts, MXHost{Name: name, Pref: mx.Preference})
	}
	switch {
	case len(hosts) == 0 && nulls > 0:
		// RFC 7505 3: the domain says it accepts no mail.
		return nil, false, &PlanError{Failed, Unroutable, fmt.Sprintf("domain %s accepts no mail (null MX): 556 5.1.10 Recipient address has null MX", domain)}
	case len(hosts) == 0:
		// No MX: the domain itself is its mail host (RFC 5321 5.1).
		return []MXHost{{Name: domain}}, true, nil
	}
	// Equal preferences in random order spread the load (RFC 5321 5.1).
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b MXHost) int { return int(a.Pref) - int(b.Pref) })
	if len(hosts) > maxMXHosts {
		hosts = hosts[:maxMXHosts]
	}
	return hosts, false, nil
}

// addrs returns host's usable IPv4 then IPv6 addresses, and whether both
// answers were DNSSEC-validated. An error says why there are none.
func (t *mxTransport) addrs(ctx context.Context, host string) ([]netip.Addr, bool, error) {
	var out []netip.Addr
	secure := true
	var unusable []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := t.lookup(ctx, host, qtype)
		if err != nil {
			return nil, false, fmt.Errorf("%s: DNS %s lookup failed: %s", host, dnsclient.TypeString(qtype), dnsclient.Reason(err))
		}
		secure = secure && a.Secure
		for _, rr := range a.Records {
			ip := dnsclient.RRAddr(rr)
			// Never connect to "this host" or a group: it is not a
			// mail host, and 0.0.0.0 would loop back to ourselves.
			if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				unusable = append(unusable, ip.String())
				continue
			}
			out = append(out, ip)
		}
		if a.NXDomain {
			return nil, false, fmt.Errorf("%s: no such host", host)
		}
	}
	if len(out) == 0 {
		if len(unusable) > 0 {
			return nil, false, fmt.Errorf("%s: no usable address (%s)", host, strings.Join(unusable, ", "))
		}
		return nil, false, fmt.Errorf("%s: no address", host)
	}
	return out, secure, nil
}

// stsPolicy is what MTA-STS asks of one domain's delivery.
type stsPolicy struct {
	p       *mtasts.Policy // nil: none (or MTA-STS off)
	enforce bool           // the policy and our setting both enforce
}

// policy looks up domain's MTA-STS policy. A lookup that fails counts as
// no policy (RFC 8461 5); its error is for the log.
func (t *mxTransport) policy(ctx context.Context, domain string) (stsPolicy, error) {
	if t.sts == nil {
		return stsPolicy{}, nil
	}
	p, err := t.sts.Policy(ctx, domain)
	if p == nil || p.Mode == mtasts.None {
		return stsPolicy{}, err
	}
	return stsPolicy{p: p, enforce: p.Mode == mtasts.Enforce && t.o.MTASTS == stsEnforce}, err
}

// tlsFor decides how to use TLS with MX host: DANE when its TLSA records
// are DNSSEC-validated and usable (which RFC 8461 2 puts before MTA-STS),
// else verified TLS under an enforced MTA-STS policy, else opportunistic
// (a testing policy logs what enforcing it would refuse). secure says the host's addresses were
// validated: then a TLSA lookup that fails makes the host unusable, as
// RFC 7672 2.2 asks, since the failure may hide records an attacker
// wants ignored.
func (t *mxTransport) tlsFor(ctx context.Context, id, domain, host string, secure bool, sts stsPolicy) (tlsPolicy, error) {
	name := "_" + strconv.Itoa(t.o.Port) + "._tcp." + host
	a, err := t.lookup(ctx, name, dns.TypeTLSA)
	switch {
	case err != nil && secure:
		return tlsPolicy{}, fmt.Errorf("%s: DANE: TLSA lookup for %s failed: %s", host, name, dnsclient.Reason(err))
	case err == nil && a.Secure:
		if records := dane.Usable(a.Records); len(records) > 0 {
			return tlsPolicy{
				mode: tlsRequired,
				check: func(cs tls.ConnectionState) error {
					if err := dane.Verify(records, host, cs.PeerCertificates); err != nil {
						return fmt.Errorf("DANE: %w", err)
					}
					return nil
				},
				why: "DANE TLSA records of " + name,
			}, nil
		}
	}
	if sts.enforce {
		return tlsPolicy{mode: tlsRequired, pkix: true, roots: t.o.RootCAs, why: "MTA-STS policy of " + domain}, nil
	}
	tp := tlsPolicy{mode: tlsOpportunistic}
	if sts.p != nil {
		tp.observe = func(cs tls.ConnectionState) {
			if err := verifyPKIX(cs, host, t.o.RootCAs); err != nil {
				t.log(id, fmt.Sprintf("MTA-STS policy of %s (testing): certificate of %s does not verify: %v: delivering anyway", domain, host, err))
			}
		}
		tp.clear = func() {
			t.log(id, fmt.Sprintf("MTA-STS policy of %s (testing): no TLS session with %s: delivering anyway", domain, host))
		}
	}
	return tp, nil
}

// verifyPKIX verifies a handshake's certificates for host as a client with
// the default configuration would.
func verifyPKIX(cs tls.ConnectionState, host string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}

// lookup asks one DNS question within CommandTimeout.
func (t *mxTransport) lookup(ctx context.Context, name string, qtype uint16) (dnsclient.Answer, error) {
	if t.o.CommandTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.o.CommandTimeout)
		defer cancel()
	}
	return t.dns.Lookup(ctx, name, qtype)
}

// domainLimit bounds the sessions open at once per recipient domain.
type domainLimit struct {
	max   int // 0 = no bound
	mu    sync.Mutex
	slots map[string]*slot
}

// slot is one domain's semaphore, kept while anyone holds or waits for it.
type slot struct {
	sem   chan struct{}
	users int
}

// acquire waits for a free session for domain, as long as ctx lets it,
// and returns its release.
func (l *domainLimit) acquire(ctx context.Context, domain string) (release func(), err error) {
	if l.max <= 0 {
		return func() {}, nil
	}
	l.mu.Lock()
	s := l.slots[domain]
	if s == nil {
		s = &slot{sem: make(chan struct{}, l.max)}
		l.slots[domain] = s
	}
	s.users++
	l.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem; l.leave(domain, s) }, nil
	case <-ctx.Done():
		l.leave(domain, s)
		return nil, ctx.Err()
	}
}

func (l *domainLimit) leave(domain string, s *slot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(l.slots, domain)
	}
}

// Package checks builds the check pipeline of a config: the one place
// that knows every check by name and the order they are asked in. Adding
// a check is a package implementing filters.Check plus one line here.
// cmd/mxgate hands the result to the gateway; the gateway knows no check.
package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"mxgate/address"
	"mxgate/auth"
	"mxgate/callout"
	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/filters/clamd"
	"mxgate/filters/milter"
	"mxgate/filters/msgauth"
	"mxgate/filters/spamd"
	"mxgate/rbl"
	"mxgate/rcptverify"
	"mxgate/route"
	"mxgate/state"
)

// A scanner that fails this many messages in a row is not called for
// breakerCoolDown, after which one message probes it: a dead spamd then
// costs each message nothing but the on_error policy, instead of a
// connect timeout each.
const (
	breakerAfter    = 5
	breakerCoolDown = 30 * time.Second
)

// backstop is how long past a check's own bound (a DNS list's timeout, a
// callout's deadline, a milter's timeouts) the pipeline still waits for
// its answer: the check's own verdict comes first; this only catches a
// check that fails to keep its bound.
const backstop = 5 * time.Second

// Pipeline is a built pipeline and what must be closed once no session
// uses it any more (the callout cache).
type Pipeline struct {
	*filters.Pipeline
	closers []func() error
}

// Close releases what the checks hold.
func (p *Pipeline) Close() error {
	var first error
	for _, c := range p.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Build returns the pipeline of cfg, refusing and verifying recipients by
// rt: the daemon's router, the one its queue delivers by, or for -bh and
// tests route.New(RouteOptions(cfg)). test builds it for a -bh session:
// the callout cache then lives in memory only, since the daemon holds the
// cache file and a test must not change what the daemon remembers.
func Build(cfg *config.Config, log filters.Logger, rt *route.Router, test bool) (*Pipeline, error) {
	return build(cfg, log, rt, nil, nil, test, false)
}

// BuildShared is Build for the daemon, with the state store serve opened
// for [state] and keeps across reloads: when it is Redis, the callout,
// recipient-verification and DNS-list caches are shared through it with
// the other gateways. The caller closes st, after the pipeline. bus gets
// the checks' own events (a circuit breaker opening or closing, the DNS
// lists' lookups); nil emits none.
func BuildShared(cfg *config.Config, log filters.Logger, rt *route.Router, st state.Store, bus *event.Bus) (*Pipeline, error) {
	return build(cfg, log, rt, st, bus, false, false)
}

// BuildPolicy is BuildShared for the policy delegation server: the
// checks of MAIL and RCPT only (DNS lists, recipient verification, rate
// limits, greylisting, callouts). The MTA that asks has applied its own
// relay policy and routing, and shows no message: no relay or route
// check, no milter, scanner or signer.
func BuildPolicy(cfg *config.Config, log filters.Logger, rt *route.Router, st state.Store, bus *event.Bus) (*Pipeline, error) {
	return build(cfg, log, rt, st, bus, false, true)
}

// BuildPolicyTest is BuildPolicy for `mxgate policy -bh`, as Build is
// for -bh: nothing counted in a store, nothing emitted.
func BuildPolicyTest(cfg *config.Config, log filters.Logger, rt *route.Router) (*Pipeline, error) {
	return build(cfg, log, rt, nil, nil, true, true)
}

// build is Build with st, the daemon's store (nil: none). The rate
// limits and greylisting count in it; the caches are shared through it
// only when it is Redis: the embedded one would merely copy what each
// cache keeps in its own file.
func build(cfg *config.Config, log filters.Logger, rt *route.Router, st state.Store, bus *event.Bus, test, policyOnly bool) (*Pipeline, error) {
	p := &Pipeline{}
	o, err := options(cfg, log, rt, st, bus, test, p)
	if err == nil && policyOnly {
		o = envelopeOnly(o)
	}
	if err != nil {
		p.Close() // what was opened before the error
		return nil, err
	}
	p.Pipeline = filters.New(o)
	return p, nil
}

// options are the pipeline's checks, in order, each with its guard; what
// must be closed later goes into p.
func options(cfg *config.Config, log filters.Logger, rt *route.Router, st state.Store, bus *event.Bus, test bool, p *Pipeline) (filters.Options, error) {
	var shared state.Store
	if st != nil && cfg.State.URL != "" {
		shared = st
	}
	policy := address.NewPolicy(cfg.Relay.Domains, cfg.Relay.TrustedNetworks)
	o := filters.Options{Log: log, Bus: bus}
	// The relay policy first: no other check ever sees a recipient it
	// refuses. It waits for nothing, so it has no timeout; should it
	// panic, the recipient is deferred, never accepted.
	o.Checks = append(o.Checks, filters.Step{Check: address.NewCheck(policy), OnError: filters.OnErrorTempfail})
	// Then routing: a trusted client's recipient that no route takes
	// (outbound "none") is refused now rather than bounced later. It
	// waits for nothing either.
	o.Checks = append(o.Checks, filters.Step{Check: route.NewCheck(rt), OnError: filters.OnErrorTempfail})
	// The sender policy of authenticated mail: what an authenticated
	// client may send as. It waits for nothing.
	if a := cfg.Auth; a.Enabled() {
		o.Checks = append(o.Checks, filters.Step{Check: auth.NewSenderCheck(a.SenderPolicy, a.SetSenderHeader, a.SenderLogins), OnError: filters.OnErrorTempfail})
	}
	if r := cfg.RBL; len(r.Lists) > 0 {
		k, err := newRBL(cfg, log, policy, shared, bus)
		if err != nil {
			return o, err
		}
		o.Checks = append(o.Checks, guarded(k, time.Duration(r.Timeout), filters.OnErrorTempfail))
	}
	// Recipient verification before the sender callout: an unknown user
	// costs no callout to the sender's MX.
	if stores, ok := recipientStores(cfg, rt); ok {
		v, err := newRecipientVerify(cfg, log, stores, shared, test)
		if err != nil {
			return o, err
		}
		p.closers = append(p.closers, v.Close)
		onError := filters.OnErrorTempfail
		if cfg.RecipientVerify.DeferOK {
			onError = filters.OnErrorAccept
		}
		o.Checks = append(o.Checks, guarded(rcptverify.NewCheck(v), time.Duration(cfg.RecipientVerify.Timeout), onError))
	}
	// The rate limits and greylisting after recipient verification (an
	// unknown user is neither counted nor greylisted) and before the
	// callout (a deferred sender costs no probe of its MX); greylisting
	// after the DNS lists, which tell it of an allow-listed client.
	steps, err := stateChecks(cfg, test, policy.Trusted, st, p)
	if err != nil {
		return o, err
	}
	o.Checks = append(o.Checks, steps...)
	if c := cfg.Callout; c.Enabled {
		k, checker, err := newCallout(cfg, log, policy, shared, bus, test)
		if err != nil {
			return o, err
		}
		p.closers = append(p.closers, checker.Close)
		onError := filters.OnErrorTempfail
		if c.Has("defer_ok") {
			onError = filters.OnErrorAccept
		}
		o.Checks = append(o.Checks, guarded(k, time.Duration(c.Deadline)+time.Duration(c.Timeout), onError))
	}
	if len(cfg.Milters) > 0 {
		k, err := newMilters(cfg, log)
		if err != nil {
			return o, err
		}
		// Each stage asks every milter in turn, each within its connect
		// and command timeouts; the milters' own on_error answers for a
		// milter that fails. The pipeline's guard accepts only when every
		// milter would.
		var bound time.Duration
		onError := filters.OnErrorAccept
		for _, m := range cfg.Milters {
			bound += time.Duration(m.ConnectTimeout) + time.Duration(m.CommandTimeout)
			if m.OnError != "accept" {
				onError = filters.OnErrorTempfail
			}
		}
		o.Checks = append(o.Checks, guarded(k, bound, onError))
	}
	o.Scanners = scanners(cfg, bus)
	if a := cfg.MsgAuth; a.Enabled && len(a.DKIMSign) > 0 {
		keys := make([]msgauth.SignKey, len(a.DKIMSign))
		for i, k := range a.DKIMSign {
			keys[i] = msgauth.SignKey{Domain: k.Domain, Selector: k.Selector, KeyFile: k.KeyFile}
		}
		// Loaded now, so a bad key file stops the start instead of
		// leaving mail unsigned.
		s, err := msgauth.NewSigner(keys)
		if err != nil {
			return o, fmt.Errorf("msgauth.dkim_sign: %w", err)
		}
		o.Final = append(o.Final, msgauth.NewSignCheck(s))
	}
	return o, nil
}

// envelopeOnly keeps of o the checks a policy server asks: those of the
// envelope, without the relay policy, routing and the message's checks.
func envelopeOnly(o filters.Options) filters.Options {
	var keep []filters.Step
	for _, st := range o.Checks {
		switch st.Check.(type) {
		case *address.Check, *route.Check, *milter.Check:
			continue
		}
		keep = append(keep, st)
	}
	o.Checks, o.Scanners, o.Final = keep, nil, nil
	return o
}

// guarded is a check with the pipeline's guard: its own bound plus the
// backstop, onError, and the circuit breaker.
func guarded(c filters.Check, bound time.Duration, onError string) filters.Step {
	return filters.Step{Check: c, Timeout: bound + backstop, OnError: onError, BreakAfter: breakerAfter, CoolDown: breakerCoolDown}
}

func newRBL(cfg *config.Config, log filters.Logger, policy *address.Policy, shared state.Store, bus *event.Bus) (*rbl.Check, error) {
	r := cfg.RBL
	lists := make([]rbl.List, len(r.Lists))
	for i, l := range r.Lists {
		lists[i] = rbl.List{Zone: l.Zone, Kind: rbl.Kind(l.Kind), Match: l.Match, Weight: l.Weight, OnError: l.OnError}
	}
	c, err := rbl.New(rbl.Options{
		Lists:     lists,
		Resolvers: r.Resolver,
		Timeout:   time.Duration(r.Timeout),
		CacheSize: r.CacheSize,
		MinTTL:    time.Duration(r.MinTTL),
		MaxTTL:    time.Duration(r.MaxTTL),
		Shared:    shared,
		Panic:     log.Panic,
		Bus:       bus,
	})
	if err != nil {
		return nil, fmt.Errorf("DNS lists: %w", err)
	}
	return rbl.NewCheck(c, rbl.CheckOptions{
		RejectScore: r.RejectScore,
		TagScore:    r.TagScore,
		AtConnect:   r.RejectAt == "connect",
		Timeout:     time.Duration(r.Timeout),
		Skip:        policy.Trusted,
	}), nil
}

func newCallout(cfg *config.Config, log filters.Logger, policy *address.Policy, shared state.Store, bus *event.Bus, test bool) (*callout.Check, *callout.Checker, error) {
	o := cfg.Callout
	opts := callout.Options{
		Hostname:           cfg.Hostname,
		Resolvers:          o.Resolver,
		Port:               o.Port,
		Random:             o.Has("random"),
		Postmaster:         o.Has("postmaster"),
		DeferOK:            o.Has("defer_ok"),
		Timeout:            time.Duration(o.Timeout),
		Deadline:           time.Duration(o.Deadline),
		CacheSize:          o.CacheSize,
		PositiveTTL:        time.Duration(o.PositiveTTL),
		NegativeTTL:        time.Duration(o.NegativeTTL),
		PerHostConcurrency: o.PerHostConcurrency,
		PerHostRate:        float64(o.PerHostRate),
		Shared:             shared,
		Log:                func(text string) { log.Main("", text) },
		Bus:                bus,
	}
	if o.Has("use_postmaster") {
		opts.MailFrom = "postmaster@" + cfg.Hostname
	}
	if !test {
		dir := filepath.Join(cfg.DataDir, "db")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, nil, fmt.Errorf("callout cache directory: %w", err)
		}
		opts.CacheFile = filepath.Join(dir, "callout.db")
	}
	c, err := callout.New(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("sender callout: %w", err)
	}
	return callout.NewCheck(c, callout.CheckOptions{
		ExemptDomains: o.ExemptDomains,
		Wait:          time.Duration(o.Deadline) + time.Duration(o.Timeout),
		Skip:          policy.Trusted,
	}), c, nil
}

// recipientStores is the store each recipient domain is verified at,
// from the same router that delivers: a [[route]]'s domains at that
// route, the other relay domains at [downstream], mail that leaves (or
// has no route) nowhere. false: no store verifies, the check is left out.
func recipientStores(cfg *config.Config, rt *route.Router) (func(domain string) (rcptverify.Store, bool), bool) {
	stores := map[string]rcptverify.Store{}
	add := func(name string, d *config.Downstream) {
		if d.Verify.Source == rcptverify.SourceNone {
			return
		}
		stores[name] = rcptverify.Store{
			Name: name, Source: d.Verify.Source, Path: d.Verify.Path,
			Target:    rcptverify.Target(d.Target),
			Delimiter: d.RecipientDelimiter, Lowercase: d.LowercaseLocal,
			// A callout asks the store as delivery reaches it.
			StartTLS: d.StartTLS, TLSVerify: d.TLSVerify,
			ConnectTimeout: time.Duration(d.ConnectTimeout),
		}
	}
	add(route.DefaultRouter, &cfg.Downstream)
	for i := range cfg.Routes {
		add(cfg.Routes[i].Name, &cfg.Routes[i])
	}
	return func(domain string) (rcptverify.Store, bool) {
		d := rt.Domain(domain)
		if d.Kind != route.Store {
			return rcptverify.Store{}, false
		}
		s, ok := stores[d.Router]
		return s, ok
	}, len(stores) > 0
}

func newRecipientVerify(cfg *config.Config, log filters.Logger, stores func(string) (rcptverify.Store, bool), shared state.Store, test bool) (*rcptverify.Verifier, error) {
	o := cfg.RecipientVerify
	opts := rcptverify.Options{
		Store:          stores,
		Hostname:       cfg.Hostname,
		DeferOK:        o.DeferOK,
		Timeout:        time.Duration(o.Timeout),
		IdleTimeout:    time.Duration(o.IdleTimeout),
		PositiveTTL:    time.Duration(o.PositiveTTL),
		NegativeTTL:    time.Duration(o.NegativeTTL),
		CacheSize:      o.CacheSize,
		MaxConnections: o.MaxConnections,
		Shared:         shared,
		Log:            func(text string) { log.Main("", text) },
		Panic:          log.Panic,
	}
	if !test {
		dir := filepath.Join(cfg.DataDir, "db")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("recipient verification cache directory: %w", err)
		}
		opts.CacheFile = filepath.Join(dir, "recipients.db")
	}
	return rcptverify.New(opts)
}

func newMilters(cfg *config.Config, log filters.Logger) (*milter.Check, error) {
	opts := make([]milter.Options, len(cfg.Milters))
	for i, m := range cfg.Milters {
		opts[i] = milter.Options{
			Address: m.Address, Name: m.Name, OnError: m.OnError,
			ConnectTimeout: time.Duration(m.ConnectTimeout),
			CommandTimeout: time.Duration(m.CommandTimeout),
			EOMTimeout:     time.Duration(m.EOMTimeout),
		}
	}
	h, err := milter.NewHost(opts, func(id, text string) { log.Main(id, text) })
	if err != nil {
		return nil, err
	}
	return milter.NewCheck(h, cfg.Hostname), nil
}

// scanners are the content scanners: msgauth first, so
// Authentication-Results sits right under our Received, then spamd (so
// X-Spam-* come before X-Virus-Scanned), then clamd. The connect timeouts
// stay the clients' own, shorter than the per-message timeout, so a
// second address is still tried when the first is dead.
func scanners(cfg *config.Config, bus *event.Bus) []filters.Entry {
	var entries []filters.Entry
	if a := cfg.MsgAuth; a.Enabled {
		// It fails only when the spool cannot be read: no breaker.
		entries = append(entries, filters.Entry{
			Filter: msgauth.New(msgauth.Options{
				AuthservID: cfg.Hostname, Resolvers: a.Resolver, Timeout: time.Duration(a.Timeout), Bus: bus,
				SPFFailReject: a.SPFFail == "reject", DMARCReject: a.DMARCReject == "honour",
			}),
			Timeout: time.Duration(a.Timeout), OnError: filters.OnErrorTempfail,
		})
	}
	if s := cfg.Spamd; s.Enabled() {
		entries = append(entries, filters.Entry{
			Filter: spamd.New(spamd.Options{
				Addresses:       s.Address,
				User:            s.User,
				MaxSize:         int64(s.MaxSize),
				TagScore:        s.TagScore,
				QuarantineScore: s.QuarantineScore,
				RejectScore:     s.RejectScore,
				Report:          s.Report,
				SubjectTag:      s.SubjectTag,
			}),
			Timeout: time.Duration(s.Timeout), OnError: s.OnError,
			BreakAfter: breakerAfter, CoolDown: breakerCoolDown,
		})
	}
	if c := cfg.Clamd; c.Enabled() {
		entries = append(entries, filters.Entry{
			Filter:  clamd.New(clamd.Options{Addresses: c.Address, OnVirus: c.OnVirus, StampClean: c.StampClean}),
			Timeout: time.Duration(c.Timeout), OnError: c.OnError,
			BreakAfter: breakerAfter, CoolDown: breakerCoolDown,
		})
	}
	return entries
}

package checks

import (
	"net/netip"
	"strings"
	"time"

	"mxgate/config"
	"mxgate/filters"
	"mxgate/greylist"
	"mxgate/ratelimit"
	"mxgate/state"
)

// OpenStore opens the state store the rate limits and greylisting use
// when the caller has none to give (Build, `mxgate hold release`): the
// configured one, or with test (a -bh session, which must not count
// against the daemon's limits) one in memory only. Tests replace it.
var OpenStore = func(cfg *config.Config, test bool) (state.Store, error) {
	if test {
		return state.Open(state.Options{})
	}
	return state.Open(cfg.StateOptions())
}

// stateCoolDown is how long the rate limits and greylisting leave a
// failed state store alone (the shared caches' 10 s).
const stateCoolDown = 10 * time.Second

// stateChecks are the rate limits and greylisting, each with its guard;
// nil when neither is configured. They use st, the daemon's store (its
// owner closes it); without one they open their own, closed with p.
func stateChecks(cfg *config.Config, test bool, trusted func(netip.Addr) bool, st state.Store, p *Pipeline) ([]filters.Step, error) {
	g := cfg.Greylist
	if len(cfg.RateLimits) == 0 && !g.Enabled {
		return nil, nil
	}
	if st == nil {
		var err error
		if st, err = OpenStore(cfg, test); err != nil {
			return nil, err
		}
		p.closers = append(p.closers, st.Close)
	}
	// A store that failed is left alone a while, as the shared caches
	// leave it: one timeout and one paniclog line per cool-down, not per
	// RCPT. Close stays the owner's (the breaker's is the store's own).
	st = state.NewBreaker(st, stateCoolDown)
	var steps []filters.Step
	if len(cfg.RateLimits) > 0 {
		k, onError := newRateLimit(cfg.RateLimits, st)
		// The store bounds its own calls; the backstop catches the rest.
		steps = append(steps, guarded(k, 0, onError))
	}
	if g.Enabled {
		k := greylist.New(greylist.Options{
			Store: st, Delay: time.Duration(g.Delay), RetryWindow: time.Duration(g.RetryWindow),
			Expire: time.Duration(g.Expire), AutoAllow: g.AutoAllow, OnError: g.OnError, Skip: trusted,
		})
		steps = append(steps, guarded(k, 0, g.OnError))
	}
	return steps, nil
}

// newRateLimit is the check of the limits, and the on_error of its
// guard: tempfail when any limit's is.
func newRateLimit(rls []config.RateLimit, st state.Store) (*ratelimit.Check, string) {
	limits := make([]ratelimit.Limit, len(rls))
	onError := filters.OnErrorAccept
	for i, r := range rls {
		l := ratelimit.Limit{
			Name: r.Name, Key: r.Key, Per: r.Per, Strict: r.Mode == "strict", Action: r.Action, OnError: r.OnError,
			Rate: ratelimit.Rate{Count: r.Count, Period: r.Period, Text: r.Rate},
		}
		if len(r.Override) > 0 {
			l.Overrides = make(map[string]ratelimit.Rate, len(r.Override))
			for _, o := range r.Override {
				l.Overrides[strings.ToLower(o.Match)] = ratelimit.Rate{Count: o.Count, Period: o.Period, Text: o.Rate}
			}
		}
		if r.OnError == filters.OnErrorTempfail {
			onError = filters.OnErrorTempfail
		}
		limits[i] = l
	}
	return ratelimit.New(ratelimit.Options{Limits: limits, Store: st}), onError
}

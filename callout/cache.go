package callout

import (
	"time"

	"mxgate/hints"
)

// Cache keys: one record per address, and per domain the results that
// speak for all its addresses (Exim's callout hints database).
const (
	keyAddress     = "a:"            // local@domain
	keyRandom      = "d:random:"     // the random local part was accepted (domain accepts all) or refused
	keyPostmaster  = "d:postmaster:" // postmaster@domain accepted or refused
	keyMailFrom    = "d:mailfrom:"   // MAIL FROM refused: the domain refuses our callouts' sender
	keyUnreachable = "d:unreachable:"
)

// bucket is the callout records' bucket in the cache file.
const bucket = "callout"

// sharedPrefix is the records' namespace in the shared store.
const sharedPrefix = "callout:"

// keys are the records cached consults for a.
func (c *Checker) keys(a address) []string {
	keys := []string{keyUnreachable + a.domain, keyMailFrom + a.domain}
	if c.o.Postmaster {
		keys = append(keys, keyPostmaster+a.domain)
	}
	if c.o.Random {
		keys = append(keys, keyRandom+a.domain)
	}
	return append(keys, keyAddress+a.key)
}

// lookup is the record under key, its verdict as a Verdict.
func (c *Checker) lookup(key string, now time.Time) (hints.Record, Verdict, bool) {
	r, ok := c.cache.Get(key, now)
	return r, Verdict(r.Verdict), ok
}

package msgauth

import (
	"errors"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// policyOutcome is the DMARC record that governs a From: domain.
type policyOutcome struct {
	record *dmarc.Record // nil: none found, or err
	policy dmarc.Policy  // p=, or sp= when inherited from the org domain
	err    error
}

// lookupPolicy finds the DMARC record for domain, falling back to its
// organisational domain (RFC 7489 §6.6.3), where sp= governs subdomains.
// go-msgauth's Lookup only asks _dmarc.<domain>.
func lookupPolicy(domain string, lookup func(string) ([]string, error)) policyOutcome {
	opts := &dmarc.LookupOptions{LookupTXT: lookup}
	rec, err := dmarc.LookupWithOptions(domain, opts)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(domain); org != domain {
			rec, err = dmarc.LookupWithOptions(org, opts)
			if err == nil {
				p := rec.SubdomainPolicy
				if p == "" {
					p = rec.Policy
				}
				return policyOutcome{record: rec, policy: p}
			}
		}
	}
	if err != nil {
		return policyOutcome{err: err}
	}
	return policyOutcome{record: rec, policy: rec.Policy}
}

// orgDomain is the organisational domain: the public suffix plus one
// label; a name that is itself a suffix stands for itself.
func orgDomain(domain string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned reports whether an authenticated domain is aligned with the From:
// domain: equal in strict mode, same organisational domain in relaxed.
func aligned(mode dmarc.AlignmentMode, authDomain, fromDomain string) bool {
	if authDomain == "" {
		return false
	}
	if strings.EqualFold(authDomain, fromDomain) {
		return true
	}
	return mode != dmarc.AlignmentStrict && orgDomain(strings.ToLower(authDomain)) == orgDomain(fromDomain)
}

// dmarcOutcome is the DMARC evaluation of one message.
type dmarcOutcome struct {
	value   authres.ResultValue
	policy  dmarc.Policy
	applied bool // a failure falls within pct=
	reason  string
}

func evaluateDMARC(fromDomain string, fromErr error, pol policyOutcome, sp spfOutcome, dk []dkimOutcome) dmarcOutcome {
	switch {
	case fromErr != nil:
		return dmarcOutcome{value: authres.ResultPermError, reason: fromErr.Error()}
	case errors.Is(pol.err, dmarc.ErrNoPolicy):
		return dmarcOutcome{value: authres.ResultNone}
	case dmarc.IsTempFail(pol.err):
		return dmarcOutcome{value: authres.ResultTempError, reason: pol.err.Error()}
	case pol.err != nil:
		return dmarcOutcome{value: authres.ResultPermError, reason: pol.err.Error()}
	}
	rec := pol.record
	o := dmarcOutcome{value: authres.ResultFail, policy: pol.policy}
	if sp.value == "pass" && aligned(rec.SPFAlignment, sp.domain, fromDomain) {
		o.value = authres.ResultPass
	}
	for _, d := range dk {
		if d.value == authres.ResultPass && aligned(rec.DKIMAlignment, d.domain, fromDomain) {
			o.value = authres.ResultPass
		}
	}
	if o.value == authres.ResultFail {
		o.applied = sample(rec.Percent)
	}
	return o
}

func (o dmarcOutcome) result(fromDomain string) authres.Result {
	return &authres.DMARCResult{Value: o.value, From: fromDomain, Reason: o.reason}
}

// Package msgauth owns sender authentication of received mail: SPF on the
// envelope sender, DKIM verification of every signature, DMARC policy and
// alignment, the Authentication-Results header that records them (and the
// removal of forged ones claiming our name), and DKIM signing of mail the
// gateway relays for trusted networks.
package msgauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/mail"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"

	"mxgate/event"
	"mxgate/filters"
	"mxgate/spool"
)

// maxSignatures bounds the DKIM signatures verified per message: each costs
// a DNS lookup and an RSA operation, and a sender gains nothing from more.
const maxSignatures = 5

// Options configures a Filter.
type Options struct {
	// AuthservID is the gateway's hostname, the authserv-id of the
	// Authentication-Results header it writes.
	AuthservID string
	// Bus gets a DNSLookup event per SPF, DKIM and DMARC question; nil
	// emits nothing.
	Bus *event.Bus
	// Resolvers are the DNS servers asked ("IP:PORT"), in order, through
	// the program's DNS client (dnsclient); config fills them. With none,
	// every lookup fails temporarily.
	Resolvers []string
	// Timeout bounds one DNS exchange; the message's deadline comes from
	// the filter chain.
	Timeout time.Duration
	// SPFFailReject refuses mail whose SPF result is fail (550 5.7.23);
	// otherwise the result is only stamped.
	SPFFailReject bool
	// DMARCReject honours p=reject of a failing From: domain (550 5.7.1);
	// otherwise the result is only stamped.
	DMARCReject bool
}

// Filter is the "msgauth" content filter.
type Filter struct {
	opts     Options
	resolver resolver
}

// New returns a Filter for opts.
func New(opts Options) *Filter {
	return &Filter{opts: opts, resolver: newResolver(opts.Resolvers, opts.Timeout, opts.Bus)}
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return "msgauth" }

// Check implements filters.Filter. It never tempfails a message for a DNS
// problem: those become temperror results in the stamp. An error means the
// spooled message could not be read.
func (f *Filter) Check(ctx context.Context, m *filters.Message) (filters.Verdict, error) {
	fromDomain, fromErr := headerFromDomain(m.Headers)

	// SPF and the DMARC record lookup only need the envelope and the From:
	// domain, so they run while the body is hashed for DKIM.
	spfc := make(chan spfOutcome, 1)
	go func() { spfc <- f.checkSPF(ctx, m) }()
	policyc := make(chan policyOutcome, 1)
	go func() {
		if fromErr != nil {
			policyc <- policyOutcome{}
			return
		}
		policyc <- lookupPolicy(fromDomain, lookupTXT(ctx, f.resolver))
	}()

	dk, err := f.checkDKIM(ctx, m)
	sp := <-spfc
	pol := <-policyc
	if err != nil {
		return filters.Verdict{}, err
	}

	dm := evaluateDMARC(fromDomain, fromErr, pol, sp, dk)

	results := []authres.Result{sp.result(m)}
	for _, d := range dk {
		results = append(results, d.result())
	}
	results = append(results, dm.result(fromDomain))
	v := filters.Verdict{
		Action:  filters.Accept,
		Headers: []spool.Header{{Type: ' ', Text: fold("Authentication-Results", authres.Format(f.opts.AuthservID, results))}},
		Log:     logFacts(sp, dk, dm),
	}
	switch {
	case f.opts.SPFFailReject && sp.value == spf.Fail:
		v.Action, v.Code, v.Enhanced, v.ReasonCode = filters.Reject, 550, [3]int{5, 7, 23}, "spf-fail"
		v.Text = "SPF check failed"
	case f.opts.DMARCReject && dm.value == authres.ResultFail && dm.policy == dmarc.PolicyReject && dm.applied:
		v.Action, v.Code, v.Enhanced, v.ReasonCode = filters.Reject, 550, [3]int{5, 7, 1}, "dmarc-reject"
		v.Text = "DMARC policy of " + fromDomain + " says reject"
	}
	return v, nil
}

// spfOutcome is the SPF check of one message.
type spfOutcome struct {
	value  spf.Result
	domain string // the domain checked: MAIL FROM's, or HELO's for <>
	helo   bool   // the HELO identity was checked (null sender)
}

func (f *Filter) checkSPF(ctx context.Context, m *filters.Message) spfOutcome {
	sender, helo := m.Sender, m.Helo
	o := spfOutcome{}
	_, dom, ok := strings.Cut(sender, "@")
	if sender == "" || !ok || dom == "" {
		// RFC 7208 §2.4: with no sender domain the HELO identity is
		// checked, as postmaster@helo.
		sender, dom, o.helo = "postmaster@"+helo, helo, true
	}
	o.domain = strings.ToLower(dom)
	ip := net.IP(m.ClientIP.Unmap().AsSlice())
	// The error only explains the result (it is set even on a pass).
	o.value, _ = spf.CheckHostWithSender(ip, helo, sender, spf.WithContext(ctx), spf.WithResolver(f.resolver))
	return o
}

func (o spfOutcome) result(m *filters.Message) authres.Result {
	r := &authres.SPFResult{Value: authres.ResultValue(o.value)}
	if o.helo {
		r.Helo = m.Helo
	} else {
		r.From = m.Sender
	}
	return r
}

// dkimOutcome is the verification of one DKIM-Signature.
type dkimOutcome struct {
	value    authres.ResultValue
	domain   string
	selector string
	reason   string
}

func (d dkimOutcome) result() authres.Result {
	params := map[string]string{"header.d": d.domain, "header.s": d.selector}
	if d.value != authres.ResultPass && d.value != authres.ResultNone {
		params["reason"] = d.reason
	}
	return &authres.GenericResult{Method: "dkim", Value: d.value, Params: params}
}

// checkDKIM verifies every DKIM-Signature, in header order. A message
// without any yields one dkim=none. The error is a spool read failure.
func (f *Filter) checkDKIM(ctx context.Context, m *filters.Message) ([]dkimOutcome, error) {
	rc, err := m.Open(true)
	if err != nil {
		return nil, fmt.Errorf("message %s: open spooled copy: %w", m.ID, err)
	}
	defer rc.Close()
	r := &errReader{r: rc}
	verifs, err := dkim.VerifyWithOptions(r, &dkim.VerifyOptions{LookupTXT: lookupTXT(ctx, f.resolver), MaxVerifications: maxSignatures})
	if r.err != nil {
		return nil, fmt.Errorf("message %s: read spooled copy: %w", m.ID, r.err)
	}
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// A header the verifier cannot even split into fields.
		return []dkimOutcome{{value: authres.ResultPermError, reason: err.Error()}}, nil
	}
	if len(verifs) == 0 {
		return []dkimOutcome{{value: authres.ResultNone}}, nil
	}
	selectors := signatureSelectors(m.Headers)
	out := make([]dkimOutcome, len(verifs))
	for i, v := range verifs {
		o := dkimOutcome{domain: strings.ToLower(v.Domain), value: authres.ResultPass}
		if i < len(selectors) {
			o.selector = selectors[i]
		}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			o.value = authres.ResultTempError
		case dkim.IsPermFail(v.Err):
			o.value = authres.ResultPermError
		default:
			o.value = authres.ResultFail
		}
		if v.Err != nil {
			o.reason = strings.TrimPrefix(v.Err.Error(), "dkim: ")
		}
		out[i] = o
	}
	return out, nil
}

// errReader remembers a read error of the spool, which the dkim package
// would otherwise report like a malformed message.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// signatureSelectors returns the s= tag of each DKIM-Signature in header
// order, the order of dkim.Verify's results; the Verification type does
// not carry it.
func signatureSelectors(headers []spool.Header) []string {
	var out []string
	for _, h := range headers {
		if h.Type == '*' || !strings.EqualFold(h.Name(), "DKIM-Signature") {
			continue
		}
		sel := ""
		for tag := range strings.SplitSeq(h.Value(), ";") {
			k, v, ok := strings.Cut(tag, "=")
			if ok && strings.TrimSpace(k) == "s" {
				sel = strings.Join(strings.Fields(v), "")
			}
		}
		out = append(out, sel)
	}
	return out
}

// headerFromDomain returns the domain of the single author address DMARC
// evaluates (RFC 7489 §6.6.1); a message with none or several has no
// DMARC identity.
func headerFromDomain(headers []spool.Header) (string, error) {
	var addrs []*mail.Address
	n := 0
	for _, h := range headers {
		if h.Type == '*' || !strings.EqualFold(h.Name(), "From") {
			continue
		}
		n++
		// Unfolded first: net/mail takes no line breaks in CFWS.
		list, err := mail.ParseAddressList(h.UnfoldedValue())
		if err != nil {
			return "", fmt.Errorf("unparsable From: %w", err)
		}
		addrs = append(addrs, list...)
	}
	switch {
	case n == 0:
		return "", errors.New("no From header")
	case n > 1:
		return "", errors.New("several From headers")
	case len(addrs) != 1:
		return "", errors.New("not exactly one From address")
	}
	_, dom, ok := strings.Cut(addrs[0].Address, "@")
	if !ok || dom == "" {
		return "", errors.New("address in From without a domain")
	}
	return strings.ToLower(strings.TrimSuffix(dom, ".")), nil
}

// logFacts is the mainlog summary, e.g. "spf=pass dkim=pass:example.test
// dmarc=pass".
func logFacts(sp spfOutcome, dk []dkimOutcome, dm dmarcOutcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "spf=%s", sp.value)
	for _, d := range dk {
		fmt.Fprintf(&b, " dkim=%s", d.value)
		if d.domain != "" {
			b.WriteString(":" + d.domain)
		}
	}
	fmt.Fprintf(&b, " dmarc=%s", dm.value)
	if dm.policy != "" {
		fmt.Fprintf(&b, " policy=%s", dm.policy)
	}
	return b.String()
}

// sample reports whether a failing message falls within pct percent.
func sample(pct *int) bool { return pct == nil || *pct >= 100 || rand.IntN(100) < *pct }

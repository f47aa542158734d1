// Package probe is `mxgate config check --probe`: it connects to every
// peer a configuration names (scanners, milters, resolvers, DNS lists,
// mail stores, the smarthost, Dovecot's userdb sockets, the Redis state
// store) through the clients the gateway itself uses, and says which
// answered.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"mxgate/config"
	"mxgate/dnsclient"
)

// Probe is one peer to try.
type Probe struct {
	// Peer names it as the config does: "spamd 127.0.0.1:783".
	Peer string
	// Required says that the gateway cannot do its work while this peer
	// does not answer (mail would be refused, deferred or not delivered):
	// a failure makes config check exit 1. Others only inform.
	Required bool
	// Timeout bounds the whole probe: the timeout of the peer's section.
	Timeout time.Duration
	// Run talks to the peer and says what it answered.
	Run func(ctx context.Context) (string, error)
}

// Result is what one probe found.
type Result struct {
	Probe
	Detail string // the peer's answer, or why there was none
	Err    error  // nil: the peer answered
	Took   time.Duration
}

// String is the line config check prints: "spamd 127.0.0.1:783: OK
// (SPAMD/1.5 PONG, 3 ms)" or "clamd /run/clamd.ctl: FAILED (connection
// refused)".
func (r Result) String() string {
	if r.Err != nil {
		mark := "FAILED"
		if !r.Required {
			mark = "FAILED, not required"
		}
		return fmt.Sprintf("%s: %s (%s)", r.Peer, mark, r.Detail)
	}
	return fmt.Sprintf("%s: OK (%s, %s)", r.Peer, r.Detail, millis(r.Took))
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// Run runs every probe at once, each bounded by its own timeout and by
// ctx, and returns their results in the order given.
func Run(ctx context.Context, probes []Probe) []Result {
	results := make([]Result, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, p.Timeout)
			defer cancel()
			start := time.Now()
			detail, err := p.Run(pctx)
			r := Result{Probe: p, Detail: detail, Err: err, Took: time.Since(start)}
			if err != nil {
				// A probe cut short by its deadline fails in many words
				// ("use of closed network connection"); the cause is one.
				if errors.Is(pctx.Err(), context.DeadlineExceeded) {
					err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
				}
				r.Err, r.Detail = err, Reason(err, p.Timeout)
			}
			results[i] = r
		})
	}
	wg.Wait()
	return results
}

// Failed reports whether a required probe failed.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Err != nil && r.Required {
			return true
		}
	}
	return false
}

// Reason says why a probe failed in the words an admin looks for:
// "connection refused", "timeout after 2s", "no such file or directory";
// anything else as the error says it.
func Reason(err error, timeout time.Duration) string {
	var dnsErr *dnsclient.Error
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &dnsErr) && dnsErr.Timeout(),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout after " + config.Duration(timeout).String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENOENT):
		return "no such file or directory"
	case errors.Is(err, syscall.EACCES):
		return "permission denied"
	case errors.As(err, &dnsErr):
		return dnsErr.Reason()
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

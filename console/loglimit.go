package console

import (
	"strconv"
	"sync"
	"time"
)

// The kinds of refusal whose mainlog lines are limited: a client sending
// many of them gets one line a minute of each, not one per request.
const (
	refusedSession = "no session"
	refusedCSRF    = "csrf" // no or a wrong token, another Origin
	refusedLogin   = "login failed"
	refusedBlocked = "login blocked" // by the throttle
)

// logEvery is how often one IP's refusals of one kind are logged.
const logEvery = time.Minute

// maxLimited bounds the (IP, kind) pairs remembered: past it those
// logged over logEvery ago are forgotten.
const maxLimited = 10000

// logLimit spaces out the mainlog lines of refused requests per client IP
// and kind, and counts the lines left out.
type logLimit struct {
	mu sync.Mutex
	m  map[limitKey]*limited
}

type limitKey struct{ ip, kind string }

type limited struct {
	logged     time.Time
	suppressed int
}

func newLogLimit() *logLimit { return &logLimit{m: map[limitKey]*limited{}} }

// line says whether a refusal of kind from ip is logged now, and if so
// the suffix that counts those left out since its last line ("" for none).
func (l *logLimit) line(now time.Time, ip, kind string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := limitKey{ip, kind}
	e := l.m[k]
	if e != nil && now.Sub(e.logged) < logEvery {
		e.suppressed++
		return false, ""
	}
	if e == nil {
		if len(l.m) >= maxLimited {
			for k, old := range l.m {
				if now.Sub(old.logged) >= logEvery {
					delete(l.m, k)
				}
			}
		}
		e = &limited{}
		l.m[k] = e
	}
	suffix := ""
	if e.suppressed > 0 {
		suffix = " (" + strconv.Itoa(e.suppressed) + " more from this IP not logged)"
	}
	e.logged, e.suppressed = now, 0
	return true, suffix
}

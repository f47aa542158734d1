package auth

import (
	"strings"
	"sync"
	"time"
)

// Throttle counts failed logins per client IP and per user: max failures
// of either within window block it for blockTime. What is not failing is
// forgotten, so the maps hold only recent offenders.
type Throttle struct {
	max       int
	window    time.Duration
	blockTime time.Duration

	mu      sync.Mutex
	keys    map[string]*record // "ip:1.2.3.4", "user:name"
	swept   time.Time
	maxKeys int
}

// maxKeys bounds the records kept: past it (an attack from many
// addresses on many names), the failures counted so far are forgotten and
// only the blocks kept.
const maxKeys = 100_000

type record struct {
	fails        []time.Time // within window, oldest first
	blockedUntil time.Time
}

// NewThrottle blocks after max failures within window, for blockTime.
func NewThrottle(max int, window, blockTime time.Duration) *Throttle {
	return &Throttle{max: max, window: window, blockTime: blockTime, keys: map[string]*record{}, maxKeys: maxKeys}
}

// Blocked tells whether ip or user (either may be "") is blocked now.
func (t *Throttle) Blocked(now time.Time, ip, user string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keysOf(ip, user) {
		if r := t.keys[k]; r != nil && now.Before(r.blockedUntil) {
			return true
		}
	}
	return false
}

// Fail counts a failed login of user from ip; it tells whether that
// blocked either.
func (t *Throttle) Fail(now time.Time, ip, user string) (blocked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	if len(t.keys) >= t.maxKeys {
		for k, r := range t.keys {
			if !now.Before(r.blockedUntil) {
				delete(t.keys, k)
			}
		}
	}
	for _, k := range keysOf(ip, user) {
		r := t.keys[k]
		if r == nil {
			r = &record{}
			t.keys[k] = r
		}
		r.fails = append(recent(r.fails, now.Add(-t.window)), now)
		if len(r.fails) >= t.max {
			r.blockedUntil = now.Add(t.blockTime)
			r.fails = nil
			blocked = true
		}
	}
	return blocked
}

func keysOf(ip, user string) []string {
	var ks []string
	if ip != "" {
		ks = append(ks, "ip:"+ip)
	}
	if user != "" {
		// Lower-cased: Dovecot's default auth_username_format (%Lu) makes
		// "Alice" and "alice" one user, and an attacker must not get a
		// fresh count with each spelling.
		ks = append(ks, "user:"+strings.ToLower(user))
	}
	return ks
}

func recent(ts []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(since) {
		i++
	}
	return ts[i:]
}

// sweep drops, once a window, the records with nothing left to remember.
func (t *Throttle) sweep(now time.Time) {
	if now.Sub(t.swept) < t.window {
		return
	}
	t.swept = now
	for k, r := range t.keys {
		if now.After(r.blockedUntil) && len(recent(r.fails, now.Add(-t.window))) == 0 {
			delete(t.keys, k)
		}
	}
}

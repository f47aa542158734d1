package admin

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"mxgate/spool"
)

// The messages a rate limit with action "hold" froze, by hold key
// ("NAME:VALUE": the limit's name and the user, sender, domain or IP it
// counts): `mxgate hold list|release|drop`.

// heldMatches reports whether a message held as hold is selected by key:
// the whole hold key, or its value part (the user) whatever the limit,
// case-insensitively.
func heldMatches(hold, key string) bool {
	if hold == "" {
		return false
	}
	if strings.EqualFold(hold, key) {
		return true
	}
	_, val, _ := strings.Cut(hold, ":")
	return strings.EqualFold(val, key)
}

// held lists the messages held under a key key selects ("": every held
// message), with their envelopes, in arrival order.
func (q *Queue) held(key string) ([]*spool.Envelope, error) {
	ids, err := q.Spool.List()
	if err != nil {
		return nil, err
	}
	var envs []*spool.Envelope
	for _, id := range ids {
		env, err := q.Spool.Load(id)
		switch {
		case errors.Is(err, spool.ErrNotFound):
			continue // delivered or removed since it was listed
		case err != nil:
			return nil, fmt.Errorf("message %s: %w", id, err)
		}
		if env.Hold != "" && (key == "" || heldMatches(env.Hold, key)) {
			envs = append(envs, env)
		}
	}
	return envs, nil
}

// HoldList writes, per hold key in key order, a line "KEY: N held" and
// the -bp entries of its messages.
func (q *Queue) HoldList(w io.Writer) error {
	envs, err := q.held("")
	if err != nil {
		return err
	}
	slices.SortStableFunc(envs, func(a, b *spool.Envelope) int { return cmp.Compare(a.Hold, b.Hold) })
	now := q.now()
	var b []byte
	for i, env := range envs {
		if i == 0 || envs[i-1].Hold != env.Hold {
			n := 0
			for _, e := range envs[i:] {
				if e.Hold != env.Hold {
					break
				}
				n++
			}
			b = fmt.Appendf(b, "%s: %d held\n", env.Hold, n)
		}
		size, err := q.Spool.Size(env)
		if err != nil {
			size = env.HeaderSize()
		}
		b = q.appendEntry(b, env.ID, env, size, nil, false, now)
	}
	_, err = w.Write(b)
	return err
}

// HoldRelease thaws every message held under a key that key selects, so
// it can be delivered now, and returns their IDs and the hold keys they
// had (whose rate counters the caller clears). A message another
// process holds the lock of is skipped with its Refusal among errs.
func (q *Queue) HoldRelease(key string) (ids []spool.ID, keys []string, lines []string, errs []error) {
	lines, errs = q.eachHeld(key, func(env *spool.Envelope) (string, error) {
		hold := env.Hold
		env.Frozen, env.ManualThaw, env.NextTry, env.Hold = time.Time{}, true, time.Time{}, ""
		if err := q.Spool.Update(env); err != nil {
			return "", fmt.Errorf("message %s: rewriting its -H file: %w", env.ID, err)
		}
		q.log(env.ID, "unfrozen by "+q.User+": hold "+hold+" released")
		q.emit(env.ID, "hold-release", "hold "+hold)
		ids = append(ids, env.ID)
		if !slices.Contains(keys, hold) {
			keys = append(keys, hold)
		}
		return fmt.Sprintf("Message %s is no longer frozen", env.ID), nil
	})
	return ids, keys, lines, errs
}

// HoldDrop removes every message held under a key that key selects,
// without a bounce, as -Mrm does.
func (q *Queue) HoldDrop(key string) (lines []string, errs []error) {
	return q.eachHeld(key, func(env *spool.Envelope) (string, error) {
		if err := q.Spool.Remove(env.ID); err != nil {
			return "", fmt.Errorf("message %s: %w", env.ID, err)
		}
		q.Log.Main(string(env.ID), "removed by "+q.User+": hold "+env.Hold+" dropped")
		q.emit(env.ID, "hold-drop", "hold "+env.Hold)
		q.Log.Main(string(env.ID), "Completed")
		q.completed(env.ID)
		return fmt.Sprintf("Message %s has been removed", env.ID), nil
	})
}

// eachHeld runs op on every message held under a key that key selects,
// under its lock, and collects its lines and errors; no message held so
// is an error.
func (q *Queue) eachHeld(key string, op func(*spool.Envelope) (string, error)) (lines []string, errs []error) {
	envs, err := q.held(key)
	if err != nil {
		return nil, []error{err}
	}
	if len(envs) == 0 {
		return nil, []error{fmt.Errorf("no message is held as %q (see `mxgate hold list`)", key)}
	}
	for _, listed := range envs {
		env, unlock, err := q.lockLoad(string(listed.ID))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Checked again under the lock: another admin may have acted.
		if !heldMatches(env.Hold, key) {
			unlock()
			continue
		}
		line, err := op(env)
		unlock()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lines = append(lines, line)
	}
	return lines, errs
}

package admin

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"mxgate/spool"
)

// Refusal is an operation Exim declines with a line on standard output
// ("Message ID is locked", "Message ID is already frozen"); the command
// still fails.
type Refusal struct {
	ID   spool.ID
	What string // "is locked", "is already frozen", "is not frozen"
}

func (r *Refusal) Error() string { return fmt.Sprintf("Message %s %s", r.ID, r.What) }

// lock takes the message's lock for an operation on it. A message another
// process is handling is refused at once, never waited for: that process
// may be in a long delivery.
func (q *Queue) lock(arg string) (spool.ID, func(), error) {
	id, err := parseID(arg)
	if err != nil {
		return "", nil, err
	}
	unlock, err := q.Spool.Lock(id)
	switch {
	case errors.Is(err, spool.ErrLocked):
		return "", nil, &Refusal{ID: id, What: "is locked"}
	case errors.Is(err, spool.ErrNotFound):
		return "", nil, notInSpool(id)
	case err != nil:
		return "", nil, fmt.Errorf("message %s: %w", id, err)
	}
	return id, unlock, nil
}

// lockLoad takes the message's lock, as lock does, and reads its
// envelope, for an operation that changes it; the caller calls unlock
// when done.
func (q *Queue) lockLoad(arg string) (*spool.Envelope, func(), error) {
	id, unlock, err := q.lock(arg)
	if err != nil {
		return nil, nil, err
	}
	env, err := q.Spool.Load(id)
	if err != nil {
		unlock()
		if errors.Is(err, spool.ErrNotFound) {
			return nil, nil, missing(id, err)
		}
		return nil, nil, fmt.Errorf("message %s: %w", id, err)
	}
	return env, unlock, nil
}

// Remove deletes a message without a bounce (-Mrm) and returns Exim's
// line for it.
func (q *Queue) Remove(arg string) (string, error) {
	id, unlock, err := q.lock(arg)
	if errors.Is(err, spool.ErrNotFound) && q.orphanedHeader(spool.ID(arg)) {
		// An -H without its -D: a broken state no delivery or commit can
		// be in (the -D is made first and removed last), so no lock is
		// needed to clear it up.
		id, unlock, err = spool.ID(arg), func() {}, nil
	}
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := q.Spool.Remove(id); errors.Is(err, spool.ErrNotFound) {
		return "", notInSpool(id)
	} else if err != nil {
		return "", fmt.Errorf("message %s: %w", id, err)
	}
	q.Log.Main(string(id), "removed by "+q.User)
	q.emit(id, "remove", "")
	q.Log.Main(string(id), "Completed")
	q.completed(id)
	return fmt.Sprintf("Message %s has been removed", id), nil
}

// orphanedHeader reports whether the valid id has an -H file but no -D.
func (q *Queue) orphanedHeader(id spool.ID) bool {
	if _, err := q.Spool.FileSize(id, spool.HeaderFile); err != nil {
		return false
	}
	_, err := q.Spool.FileSize(id, spool.DataFile)
	return errors.Is(err, fs.ErrNotExist)
}

// Freeze stops delivery attempts on a message until it is thawed (-Mf).
func (q *Queue) Freeze(arg string) (string, error) {
	return q.setFrozen(arg, true)
}

// Thaw lets a frozen message be delivered again (-Mt).
func (q *Queue) Thaw(arg string) (string, error) {
	return q.setFrozen(arg, false)
}

func (q *Queue) setFrozen(arg string, freeze bool) (string, error) {
	env, unlock, err := q.lockLoad(arg)
	if err != nil {
		return "", err
	}
	defer unlock()
	id := env.ID
	frozen := !env.Frozen.IsZero()
	switch {
	case freeze && frozen:
		return "", &Refusal{ID: id, What: "is already frozen"}
	case !freeze && !frozen:
		return "", &Refusal{ID: id, What: "is not frozen"}
	case freeze:
		env.Frozen, env.ManualThaw = q.now(), false
	default:
		env.Frozen, env.ManualThaw = time.Time{}, true
	}
	if err := q.Spool.Update(env); err != nil {
		return "", fmt.Errorf("message %s: rewriting its -H file: %w", id, err)
	}
	if freeze {
		q.Log.Main(string(id), "frozen by "+q.User)
		q.emit(id, "freeze", "")
		return fmt.Sprintf("Message %s is now frozen", id), nil
	}
	q.Log.Main(string(id), "unfrozen by "+q.User)
	q.emit(id, "thaw", "")
	return fmt.Sprintf("Message %s is no longer frozen", id), nil
}

// MakeDue readies a message for a forced delivery (-M): a frozen message
// is thawed ("Unfrozen by forced delivery", as Exim logs it) and the
// retry time is cleared, so the next attempt on it goes ahead.
func (q *Queue) MakeDue(arg string) (spool.ID, error) {
	env, unlock, err := q.lockLoad(arg)
	if err != nil {
		return "", err
	}
	defer unlock()
	id := env.ID
	thawed := !env.Frozen.IsZero()
	if !thawed && env.NextTry.IsZero() {
		q.emit(id, "deliver", "")
		return id, nil
	}
	if thawed {
		env.Frozen, env.ManualThaw = time.Time{}, true
	}
	env.NextTry = time.Time{}
	if err := q.Spool.Update(env); err != nil {
		return "", fmt.Errorf("message %s: %w", id, err)
	}
	if thawed {
		q.log(id, "Unfrozen by forced delivery")
	}
	q.emit(id, "deliver", "")
	return id, nil
}

// View copies one of a message's files to w unchanged, as Exim's -Mvl
// (spool.MsglogFile), -Mvh (spool.HeaderFile) and -Mvb (spool.DataFile)
// do. It takes no lock: -H is only ever replaced whole, by rename, so it
// is read either before or after an update.
func (q *Queue) View(w io.Writer, arg string, which spool.File) error {
	id, err := parseID(arg)
	if err != nil {
		return err
	}
	f, err := q.Spool.OpenFile(id, which)
	if errors.Is(err, fs.ErrNotExist) {
		if _, herr := q.Spool.FileSize(id, spool.HeaderFile); errors.Is(herr, fs.ErrNotExist) {
			return notInSpool(id)
		}
	}
	if err != nil {
		return fmt.Errorf("message %s: %w", id, err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("message %s: %w", id, err)
	}
	return nil
}

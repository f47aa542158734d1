package main

import (
	"errors"
	"fmt"
	"io"

	"mxgate/admin"
	"mxgate/spool"
)

func init() {
	register("quarantine list", "\tlist quarantined messages: age, size, ID, sender, reason", quarantineList)
	register("quarantine show", "ID\tshow a quarantined message: its -H file, then its -D file", quarantineShow)
	register("quarantine release", "ID...\tmove messages from quarantine into the queue and deliver them now", quarantineRelease)
	register("quarantine delete", "ID...\tdelete messages from quarantine", quarantineDelete)
}

// quarantineID checks an ID given on the command line, with -Mrm's words.
func quarantineID(arg string) (spool.ID, error) {
	if !spool.ValidID(arg) {
		return "", fmt.Errorf("%q: %w (want TTTTTT-PPPPPP-SS)", arg, admin.ErrInvalidID)
	}
	return spool.ID(arg), nil
}

// quarantineError says what went wrong with one quarantined message in an
// administrator's words.
func quarantineError(id spool.ID, err error) error {
	switch {
	case errors.Is(err, spool.ErrNotFound):
		return fmt.Errorf("message %s is not in quarantine", id)
	case errors.Is(err, spool.ErrLocked):
		return &admin.Refusal{ID: id, What: "is locked"}
	}
	return fmt.Errorf("message %s: %w", id, err)
}

// quarantineList prints one line per quarantined message, oldest first:
// age and size as -bp shows them, the ID, the sender and the reason.
func quarantineList(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	q, _, closeAll, err := adminQueue(e)
	if err != nil {
		return err
	}
	defer closeAll()
	list, err := q.Spool.QuarantineList()
	if err != nil {
		return err
	}
	now := clock()
	for _, m := range list {
		env := m.Envelope
		fmt.Fprintf(e.stdout, "%s %s %s <%s> %s\n", admin.FormatAge(now.Sub(env.Received)), admin.FormatSize(m.Size), env.ID, env.Sender, m.Reason)
	}
	return nil
}

// quarantineShow prints the message's -H file and then its -D file, as
// -Mvh and -Mvb would for a queued one.
func quarantineShow(e *env) error {
	if len(e.args) != 1 {
		return fmt.Errorf("give exactly one message ID: %w", errUsage)
	}
	id, err := quarantineID(e.args[0])
	if err != nil {
		return err
	}
	q, _, closeAll, err := adminQueue(e)
	if err != nil {
		return err
	}
	defer closeAll()
	hdr, err := q.Spool.QuarantineHeaderFile(id)
	if err != nil {
		return quarantineError(id, err)
	}
	body, err := q.Spool.QuarantineOpenBody(id)
	if err != nil {
		return quarantineError(id, err)
	}
	defer body.Close()
	if _, err := fmt.Fprintf(e.stdout, "%s%s-D\n", hdr, id); err != nil {
		return err
	}
	if _, err := io.Copy(e.stdout, body); err != nil {
		return fmt.Errorf("message %s: %w", id, err)
	}
	return nil
}

// quarantineRelease moves each message into the queue and makes one
// delivery attempt at it now, as -M does; a running daemon that takes it
// first delivers it instead.
func quarantineRelease(e *env) error {
	return prepareAndDeliver(e, func(q *admin.Queue, arg string) (spool.ID, error) {
		id, err := quarantineID(arg)
		if err != nil {
			return "", err
		}
		if err := q.Spool.QuarantineRelease(id); err != nil {
			return "", quarantineError(id, err)
		}
		q.Log.Main(string(id), "released from quarantine by "+q.User)
		fmt.Fprintf(e.stdout, "Message %s has been released from quarantine\n", id)
		return id, nil
	})
}

func quarantineDelete(e *env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("give one or more message IDs: %w", errUsage)
	}
	q, _, closeAll, err := adminQueue(e)
	if err != nil {
		return err
	}
	defer closeAll()
	f := failures{e: e}
	for _, arg := range e.args {
		id, err := quarantineID(arg)
		if err == nil {
			if err = q.Spool.QuarantineDelete(id); err != nil {
				err = quarantineError(id, err)
			}
		}
		if err != nil {
			f.add(err)
			continue
		}
		q.Log.Main(string(id), "deleted from quarantine by "+q.User)
		fmt.Fprintf(e.stdout, "Message %s has been deleted from quarantine\n", id)
	}
	return f.result()
}

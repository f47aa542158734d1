package admin

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"mxgate/address"
	"mxgate/dsn"
	"mxgate/event"
	"mxgate/spool"
)

// cancelled is Exim's reason for the recipients of a message an admin
// gave up on (-Mg).
const cancelled = "delivery cancelled by administrator"

// GiveUp ends a message's delivery (-Mg), as Exim's does: "cancelled by
// USER", each undelivered recipient failed ("** ADDR: delivery cancelled
// by administrator"), one bounce to the sender through the queue's own
// notification (none for a bounce: it is discarded), then "Completed" and
// the message removed. It returns the bounce's ID ("" when none was
// sent), for the caller to deliver. A frozen message is given up like any
// other. When the bounce cannot be written nothing else changes.
func (q *Queue) GiveUp(ctx context.Context, arg string) (spool.ID, error) {
	env, unlock, err := q.lockLoad(arg)
	if err != nil {
		return "", err
	}
	defer unlock()
	id := env.ID
	pending := env.Pending()
	q.log(id, "cancelled by "+q.User)
	q.emit(id, "giveup", "")
	for _, r := range pending {
		q.log(id, "** "+r+": "+cancelled)
		q.Bus.Emit(event.Event{Kind: event.Delivery, ID: string(id), Sender: env.Sender, Recipient: r, Outcome: event.Failed,
			Reply: cancelled, Delay: q.now().Sub(env.Received)})
	}
	var bounce spool.ID
	if env.Sender != "" && len(pending) > 0 {
		rcpts := make([]dsn.Recipient, len(pending))
		for i, r := range pending {
			rcpts[i] = dsn.Recipient{Addr: r, Err: cancelled}
		}
		rep := &dsn.Report{
			Hostname:   q.Hostname,
			ID:         id,
			Sender:     env.Sender,
			Arrival:    env.Received,
			Headers:    env.Headers,
			Recipients: rcpts,
			Date:       q.now(),
		}
		bounce, err = dsn.Commit(ctx, q.Spool, q.Log, dsn.Failure, rep)
		if err != nil {
			// The message stays as it was, to be given up again.
			return "", fmt.Errorf("message %s: writing the bounce to <%s>: %w", id, env.Sender, err)
		}
		q.Bus.Emit(event.Event{Kind: event.Accepted, ID: string(bounce), Recipients: []string{env.Sender},
			MessageID: rep.MessageID, Action: "accept", Source: event.SourceBounce})
		q.Bus.Emit(event.Event{Kind: event.Bounce, ID: string(bounce), Parent: string(id), Recipient: env.Sender})
	}
	for _, r := range pending {
		// Recorded before the removal: should that fail, the recipient
		// is not bounced a second time.
		if err := q.Spool.Journal(id, r); err != nil {
			q.Log.Panic(fmt.Sprintf("%s journal write for %s failed: %v", id, r, err))
		}
	}
	if err := q.Spool.Remove(id); err != nil {
		return bounce, fmt.Errorf("message %s: given up but not removed from the spool: %w", id, err)
	}
	q.Log.Main(string(id), "Completed")
	q.completed(id)
	return bounce, nil
}

// log writes a message's line to the mainlog and its msglog, as the
// queue's delivery lines are.
func (q *Queue) log(id spool.ID, text string) {
	q.Log.Main(string(id), text)
	if err := q.Spool.Msglog(id, text); err != nil {
		q.Log.Panic(fmt.Sprintf("%s msglog write failed: %v", id, err))
	}
}

// AddRecipients adds recipients to a message (-Mar): each is logged
// "recipient <ADDR> added by USER" and the -H rewritten once, under the
// message's lock. A malformed address, or one already a recipient, is
// refused in Exim's words and nothing changes.
func (q *Queue) AddRecipients(arg string, addrs []string) (string, error) {
	const doing = "adding recipient"
	if len(addrs) == 0 {
		return "", refusalFor(arg, fmt.Sprintf("- error while %s: no address given", doing))
	}
	env, unlock, err := q.lockLoad(arg)
	if err != nil {
		return "", err
	}
	defer unlock()
	id := env.ID
	var added []string
	for _, a := range addrs {
		r, err := parseAddress(a)
		switch {
		case err != nil:
			return "", &Refusal{ID: id, What: fmt.Sprintf("- error while %s:\n  bad address %s: %v", doing, a, err)}
		case r == "":
			return "", &Refusal{ID: id, What: fmt.Sprintf("- error while %s:\n  bad address %s: a recipient cannot be <>", doing, a)}
		case slices.Contains(env.Recipients, r) || slices.Contains(added, r):
			return "", &Refusal{ID: id, What: fmt.Sprintf("- error while %s:\n  %s is already a recipient: message not updated", doing, r)}
		}
		added = append(added, r)
	}
	env.Recipients = append(env.Recipients, added...)
	if err := q.Spool.Update(env); err != nil {
		return "", fmt.Errorf("message %s: rewriting its -H file: %w", id, err)
	}
	for _, r := range added {
		q.Log.Main(string(id), fmt.Sprintf("recipient <%s> added by %s", r, q.User))
		q.emit(id, "add-recipient", "<"+r+">")
	}
	return fmt.Sprintf("Message %s has been modified", id), nil
}

// EditSender replaces a message's envelope sender (-Mes); "<>" or ""
// makes it a bounce. Logged as Exim logs it: "sender address changed to
// <ADDR> by USER".
func (q *Queue) EditSender(arg, sender string) (string, error) {
	env, unlock, err := q.lockLoad(arg)
	if err != nil {
		return "", err
	}
	defer unlock()
	id := env.ID
	s, err := parseAddress(sender)
	if err != nil {
		return "", &Refusal{ID: id, What: fmt.Sprintf("- error while editing sender:\n  bad address %s: %v", sender, err)}
	}
	env.Sender = s
	if err := q.Spool.Update(env); err != nil {
		return "", fmt.Errorf("message %s: rewriting its -H file: %w", id, err)
	}
	q.Log.Main(string(id), fmt.Sprintf("sender address changed to <%s> by %s", s, q.User))
	q.emit(id, "edit-sender", "<"+s+">")
	return fmt.Sprintf("Message %s has been modified", id), nil
}

// refusalFor is a Refusal for an argument not yet checked as an ID.
func refusalFor(arg, what string) error {
	id, err := parseID(arg)
	if err != nil {
		return err
	}
	return &Refusal{ID: id, What: what}
}

// parseAddress reads an address given on the command line, with or
// without its angle brackets, into the envelope's form; "" is <>.
func parseAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return "", nil
	}
	a, err := address.Parse(s)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// MatchRecipient returns the messages, not frozen, with an undelivered
// recipient containing s in any case: what Exim's -R and -qR deliver.
func (q *Queue) MatchRecipient(s string) ([]spool.ID, error) {
	ids, err := q.Spool.List()
	if err != nil {
		return nil, err
	}
	s = strings.ToLower(s)
	var match []spool.ID
	for _, id := range ids {
		env, err := q.Spool.Load(id)
		if err != nil || !env.Frozen.IsZero() {
			// Gone, or unreadable: -bp shows those; a delivery of it
			// would fail the same way.
			continue
		}
		for _, r := range env.Pending() {
			if strings.Contains(strings.ToLower(r), s) {
				match = append(match, id)
				break
			}
		}
	}
	return match, nil
}

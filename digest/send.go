package digest

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"mxgate/event"
	"mxgate/spool"
)

// Sender is what Send needs besides Options: the daemon's (or the
// command's) spool and mainlog, and the event bus.
type Sender struct {
	Options
	Spool *spool.Spool
	Log   spool.Logger
	Bus   *event.Bus
	// State is the state file, DATA_DIR/digest.state; a lock beside it
	// (digest.state.lock) keeps two senders (the daemon's schedule and
	// `mxgate digest send`) from listing a message twice.
	State string
}

// Sent is one digest committed to the spool.
type Sent struct {
	ID        spool.ID
	Recipient string
	Messages  int
}

// Send builds the digests of what is in quarantine and not yet reported
// (to limits them to one recipient) and commits each to the spool as a
// new message from <> (a report never bounces), logged "<= <> U=mxgate
// P=local S=N id=MSGID"; delivering them is the caller's (the queue's
// Enqueue). A message is recorded as told only once its digest is
// committed. A digest that fails is an error and the others still go.
func (s *Sender) Send(ctx context.Context, to string) ([]Sent, error) {
	unlock, err := lockFile(s.State + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	told, err := LoadState(s.State)
	if err != nil {
		return nil, err
	}
	list, err := s.Spool.QuarantineList()
	if err != nil {
		return nil, err
	}
	told.prune(list)
	var sent []Sent
	var errs []error
	for _, m := range Build(&s.Options, list, told, to) {
		id, err := s.commit(ctx, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("digest for %s: %w", m.Recipient, err))
			continue
		}
		for _, it := range m.Items {
			told.Add(it.ID, m.Recipient)
		}
		sent = append(sent, Sent{ID: id, Recipient: m.Recipient, Messages: len(m.Items)})
	}
	if err := told.save(s.State); err != nil {
		errs = append(errs, err)
	}
	return sent, errors.Join(errs...)
}

func (s *Sender) commit(ctx context.Context, m *Mail) (spool.ID, error) {
	w, err := s.Spool.Create()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	msgID := "D" + string(w.ID()) + "@" + s.Hostname
	env := &spool.Envelope{
		Recipients:       []string{m.Recipient},
		Received:         s.now(),
		ReceivedProtocol: "local",
		DeliverFirstTime: true,
		Headers:          append(m.Headers, spool.Header{Type: 'I', Text: "Message-Id: <" + msgID + ">\n"}),
	}
	if _, err := w.Write(m.Body); err != nil {
		return "", err
	}
	size := env.HeaderSize() + 1 + int64(len(m.Body))
	if err := w.Receive(ctx, env, fmt.Sprintf("U=mxgate P=local S=%d id=%s", size, msgID), s.Log); err != nil {
		return "", err
	}
	if s.Bus.Enabled() {
		s.Bus.Emit(event.Event{Kind: event.Accepted, ID: string(env.ID), Recipients: env.Recipients, Size: size,
			Subject: subject(len(m.Items)), MessageID: msgID, Action: "accept", Source: event.SourceDigest})
	}
	return env.ID, nil
}

// lockFile takes an exclusive lock on path (made if missing), waiting
// for another holder.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("digest state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("digest state: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

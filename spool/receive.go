package spool

import (
	"context"
	"fmt"
)

// Logger is where Receive records an arrival; *mainlog.Logger is one (the
// spool does not import mainlog's Logger, so that tests and tools can log
// elsewhere). A nil Logger logs nothing.
type Logger interface {
	Main(id, text string) // one mainlog line for message id
	Panic(text string)    // a paniclog line: something went wrong that lost no mail
}

// Receive commits w's message (Commit) and then records its arrival as
// Exim does: LogArrival's mainlog and msglog lines. arrival is the rest of
// the line after the sender, e.g. "H=(helo) [192.0.2.1]:4711 P=esmtp
// S=1234 id=abc@example" or "U=root P=local S=321". When Commit fails
// nothing is logged and the message does not exist; a msglog that cannot
// be written is a paniclog line, not an error (the message is safe).
func (w *Writer) Receive(ctx context.Context, env *Envelope, arrival string, log Logger) error {
	if err := w.Commit(ctx, env); err != nil {
		return err
	}
	w.s.LogArrival(env, arrival, log)
	return nil
}

// LogArrival writes the arrival lines of a committed message: the mainlog's
// "ID <= SENDER ARRIVAL" and the msglog's "Received from SENDER ARRIVAL",
// SENDER being env.Sender or "<>". It is the second half of Receive, for a
// caller with something to log between the commit and the "<=" line.
func (s *Spool) LogArrival(env *Envelope, arrival string, log Logger) {
	sender := env.Sender
	if sender == "" {
		sender = "<>"
	}
	line := sender + " " + arrival
	if log != nil {
		log.Main(string(env.ID), "<= "+line)
	}
	if err := s.Msglog(env.ID, "Received from "+line); err != nil && log != nil {
		log.Panic(fmt.Sprintf("%s: writing msglog: %v", env.ID, err))
	}
}

package dsn

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"

	"mxgate/spool"
)

// User is logged as U= on the arrival of a notification, where Exim logs
// its own user: the login of the process that makes it (the daemon's
// user, or the admin's command switched to it), "uid N" without a passwd
// entry, as Exim writes.
var User = sync.OnceValue(func() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
})

// Commit builds the notification r describes with build (Failure or
// Delay) and commits it to sp as a new message from the null sender to
// r.Sender, logged as Exim logs its own: "NEWID <= <> R=PARENT U=USER
// P=local S=N" (USER: User), PARENT being r.ID; r.Date is its arrival time, and
// r.MessageID is set to "E" and its ID, as Exim names its own. It returns
// the new message's ID; delivering it is the caller's business. When it
// fails nothing is left in the spool.
func Commit(ctx context.Context, sp *spool.Spool, log spool.Logger, build func(*Report) (*Message, error), r *Report) (spool.ID, error) {
	w, err := sp.Create()
	if err != nil {
		return "", err
	}
	r.MessageID = "E" + string(w.ID())
	m, err := build(r)
	if err == nil {
		_, err = w.Write(m.Body)
	}
	if err != nil {
		if aerr := w.Abort(); aerr != nil {
			err = fmt.Errorf("%w (and removing %s: %v)", err, w.ID(), aerr)
		}
		return "", err
	}
	env := &spool.Envelope{
		ID:               w.ID(),
		Recipients:       []string{r.Sender},
		Received:         r.Date,
		ReceivedProtocol: "local",
		BodyLinecount:    bytes.Count(m.Body, []byte("\n")),
		DeliverFirstTime: true,
		Headers:          m.Headers,
	}
	arrival := fmt.Sprintf("R=%s U=%s P=local S=%d", r.ID, User(), env.HeaderSize()+1+int64(len(m.Body)))
	if err := w.Receive(ctx, env, arrival, log); err != nil {
		return "", err
	}
	return env.ID, nil
}

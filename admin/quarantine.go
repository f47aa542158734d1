package admin

import (
	"errors"
	"fmt"
	"io"

	"mxgate/spool"
)

// quarantineError says what went wrong with one quarantined message in an
// administrator's words.
func quarantineError(id spool.ID, err error) error {
	switch {
	case errors.Is(err, spool.ErrNotFound):
		return fmt.Errorf("message %s is not in quarantine", id)
	case errors.Is(err, spool.ErrLocked):
		return &Refusal{ID: id, What: "is locked"}
	}
	return fmt.Errorf("message %s: %w", id, err)
}

// QuarantineList writes one line per quarantined message, oldest first:
// age and size as -bp shows them, the ID, the sender and the reason
// (`mxgate quarantine list`).
func (q *Queue) QuarantineList(w io.Writer) error {
	list, err := q.Spool.QuarantineList()
	if err != nil {
		return err
	}
	now := q.now()
	var b []byte
	for _, m := range list {
		env := m.Envelope
		b = fmt.Appendf(b, "%s %s %s <%s> %s\n", FormatAge(now.Sub(env.Received)), FormatSize(m.Size), env.ID, env.Sender, m.Reason)
	}
	_, err = w.Write(b)
	return err
}

// QuarantineShow writes a quarantined message's -H file and then its -D
// file, as -Mvh and -Mvb would for a queued one (`mxgate quarantine show`).
func (q *Queue) QuarantineShow(w io.Writer, arg string) error {
	id, err := parseID(arg)
	if err != nil {
		return err
	}
	hdr, err := q.Spool.QuarantineHeaderFile(id)
	if err != nil {
		return quarantineError(id, err)
	}
	body, err := q.Spool.QuarantineOpenBody(id)
	if err != nil {
		return quarantineError(id, err)
	}
	defer body.Close()
	if _, err := fmt.Fprintf(w, "%s%s-D\n", hdr, id); err != nil {
		return err
	}
	if _, err := io.Copy(w, body); err != nil {
		return fmt.Errorf("message %s: %w", id, err)
	}
	return nil
}

// QuarantineRelease moves a quarantined message into the queue, logs who
// did it, and returns its ID and the line to print; the caller makes the
// delivery attempt (`mxgate quarantine release`). A message another
// process handles is a Refusal.
func (q *Queue) QuarantineRelease(arg string) (spool.ID, string, error) {
	id, err := parseID(arg)
	if err != nil {
		return "", "", err
	}
	if err := q.Spool.QuarantineRelease(id); err != nil {
		return "", "", quarantineError(id, err)
	}
	q.Log.Main(string(id), "released from quarantine by "+q.User)
	q.emit(id, "release", "")
	return id, fmt.Sprintf("Message %s has been released from quarantine", id), nil
}

// QuarantineDelete removes a quarantined message for good, logs who did
// it, and returns the line to print (`mxgate quarantine delete`).
func (q *Queue) QuarantineDelete(arg string) (string, error) {
	id, err := parseID(arg)
	if err != nil {
		return "", err
	}
	if err := q.Spool.QuarantineDelete(id); err != nil {
		return "", quarantineError(id, err)
	}
	q.Log.Main(string(id), "deleted from quarantine by "+q.User)
	q.emit(id, "delete", "")
	return fmt.Sprintf("Message %s has been deleted from quarantine", id), nil
}

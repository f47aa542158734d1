package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxgate/event"
	"mxgate/internal/eventtest"
	"mxgate/spool"
)

func quarantineOne(t *testing.T, q *Queue, sender string, age time.Duration, body, reason string) spool.ID {
	t.Helper()
	w, err := q.Spool.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	env := &spool.Envelope{
		Sender: sender, Recipients: []string{"bob@example.test"}, Received: now.Add(-age),
		Headers: []spool.Header{{Type: ' ', Text: "Subject: test\n"}},
	}
	if err := q.Spool.Quarantine(context.Background(), w, env, reason); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func TestQuarantine(t *testing.T) {
	q, dir := newQueue(t)
	id1 := quarantineOne(t, q, "alice@example.test", 25*time.Minute, strings.Repeat("x", 1984)+"\n", "virus Test.EICAR")
	id2 := quarantineOne(t, q, "", 100*time.Minute, "bounce\n", "spam score 9.0")
	absent := "1tXyZa-000AbC-Qr"

	var out bytes.Buffer
	if err := q.QuarantineList(&out); err != nil {
		t.Fatal(err)
	}
	want := "25m  2.0K " + string(id1) + " <alice@example.test> virus Test.EICAR\n" +
		" 2h    22 " + string(id2) + " <> spam score 9.0\n"
	if out.String() != want {
		t.Errorf("QuarantineList:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	if err := q.QuarantineShow(&out, string(id2)); err != nil {
		t.Fatal(err)
	}
	hdr, _ := q.Spool.QuarantineHeaderFile(id2)
	if want := string(hdr) + string(id2) + "-D\nbounce\n"; out.String() != want {
		t.Errorf("QuarantineShow = %q, want %q", out.String(), want)
	}

	for name, op := range map[string]func(string) error{
		"show":    func(a string) error { return q.QuarantineShow(new(bytes.Buffer), a) },
		"release": func(a string) error { _, _, err := q.QuarantineRelease(a); return err },
		"delete":  func(a string) error { _, err := q.QuarantineDelete(a); return err },
	} {
		if err := op("../../etc/passwd"); !errors.Is(err, ErrInvalidID) {
			t.Errorf("%s of a path: %v, want ErrInvalidID", name, err)
		}
		if err := op(absent); err == nil || err.Error() != "message "+absent+" is not in quarantine" {
			t.Errorf("%s of an absent message: %v", name, err)
		}
	}

	// Locked by another process: refused as -Mrm refuses.
	rc, err := q.Spool.QuarantineOpenBody(id1)
	if err != nil {
		t.Fatal(err)
	}
	f := rc.(*os.File)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var ref *Refusal
	if _, _, err := q.QuarantineRelease(string(id1)); !errors.As(err, &ref) || ref.Error() != "Message "+string(id1)+" is locked" {
		t.Errorf("release of a locked message: %v", err)
	}
	if _, err := q.QuarantineDelete(string(id1)); !errors.As(err, &ref) {
		t.Errorf("delete of a locked message: %v", err)
	}
	f.Close()

	id, line, err := q.QuarantineRelease(string(id1))
	if err != nil || id != id1 || line != "Message "+string(id1)+" has been released from quarantine" {
		t.Errorf("QuarantineRelease = %q, %q, %v", id, line, err)
	}
	if ids, _ := q.Spool.List(); !slices.Equal(ids, []spool.ID{id1}) {
		t.Errorf("queue after release: %v", ids)
	}
	line, err = q.QuarantineDelete(string(id2))
	if err != nil || line != "Message "+string(id2)+" has been deleted from quarantine" {
		t.Errorf("QuarantineDelete = %q, %v", line, err)
	}
	out.Reset()
	if err := q.QuarantineList(&out); err != nil || out.Len() != 0 {
		t.Errorf("list after all: %q, %v", out.String(), err)
	}
	logs := mainlogLines(t, dir)
	wantLog := []string{
		string(id1) + " released from quarantine by admin",
		string(id1) + " <= alice@example.test P=local S=2000 (released from quarantine)",
		string(id2) + " deleted from quarantine by admin",
	}
	if !slices.Equal(logs, wantLog) {
		t.Errorf("mainlog %q, want %q", logs, wantLog)
	}
}

// TestQuarantinePerRecipient is what a digest link does: release for
// one recipient (a copy, its own "<=" line as the gateway wrote the
// original's), delete for another, each logged with who did it.
func TestQuarantinePerRecipient(t *testing.T) {
	ctx := context.Background()
	q, dir := newQueue(t)
	q.User = "digest link"
	rec, bus := eventtest.New()
	q.Bus = bus
	w, err := q.Spool.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("spam\n"))
	env := &spool.Envelope{
		Sender: "spammer@example.net", Recipients: []string{"bob@example.test", "carol@example.test", "dave@example.test"},
		Received: now, HeloName: "mail.example.net", HostAddress: "192.0.2.7:40123", ReceivedProtocol: "esmtp",
		Headers: []spool.Header{{Type: ' ', Text: "Subject: buy\n"}, {Type: 'I', Text: "Message-ID: <m1@example.net>\n"}},
	}
	if err := q.Spool.Quarantine(ctx, w, env, "spam score 12 >= quarantine 5"); err != nil {
		t.Fatal(err)
	}
	id := w.ID()

	copyID, line, err := q.QuarantineReleaseFor(ctx, id, "carol@example.test")
	if err != nil || copyID == id || line != "Message "+string(id)+" has been released from quarantine for carol@example.test" {
		t.Fatalf("QuarantineReleaseFor = %q, %q, %v", copyID, line, err)
	}
	if line, err := q.QuarantineDeleteFor(id, "bob@example.test"); err != nil || line != "Message "+string(id)+" has been deleted from quarantine for bob@example.test" {
		t.Errorf("QuarantineDeleteFor = %q, %v", line, err)
	}
	if _, err := q.QuarantineDeleteFor(id, "bob@example.test"); err == nil || err.Error() != "message "+string(id)+" is not in quarantine for bob@example.test" {
		t.Errorf("second delete for bob: %v", err)
	}
	lastID, _, err := q.QuarantineReleaseFor(ctx, id, "dave@example.test")
	if err != nil || lastID != id {
		t.Errorf("release for the last recipient = %q, %v; want the message itself", lastID, err)
	}
	arrival := " <= spammer@example.net H=(mail.example.net) [192.0.2.7]:40123 P=esmtp S=48 id=m1@example.net (released from quarantine)"
	want := []string{
		string(id) + " released from quarantine for carol@example.test by digest link: queued as " + string(copyID),
		string(copyID) + arrival,
		string(id) + " deleted from quarantine for bob@example.test by digest link",
		string(id) + " released from quarantine for dave@example.test by digest link",
		string(id) + arrival,
	}
	if logs := mainlogLines(t, dir); !slices.Equal(logs, want) {
		t.Errorf("mainlog\n%s\nwant\n%s", strings.Join(logs, "\n"), strings.Join(want, "\n"))
	}
	// The events say the same, as data.
	var admins, accepted []string
	for _, e := range rec.Of(event.Admin) {
		admins = append(admins, e.ID+" "+e.Action+" "+e.Recipient+" "+e.User)
	}
	for _, e := range rec.Of(event.Accepted) {
		accepted = append(accepted, fmt.Sprintf("%s %s %v %d %s %s", e.ID, e.Source, e.Recipients, e.Size, e.Subject, e.MessageID))
	}
	wantAdmin := []string{
		string(id) + " release carol@example.test digest link",
		string(id) + " delete bob@example.test digest link",
		string(id) + " release dave@example.test digest link",
	}
	wantAccepted := []string{
		string(copyID) + " release [carol@example.test] 48 buy m1@example.net",
		string(id) + " release [dave@example.test] 48 buy m1@example.net",
	}
	if !slices.Equal(admins, wantAdmin) || !slices.Equal(accepted, wantAccepted) {
		t.Errorf("Admin events %q\nwant %q\nAccepted %q\nwant %q", admins, wantAdmin, accepted, wantAccepted)
	}
}

package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// quarantineMessage receives body and quarantines it with reason.
func quarantineMessage(t *testing.T, s *Spool, env *Envelope, body, reason string) ID {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range strings.SplitAfterSeq(body, "\n") {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Quarantine(context.Background(), w, env, reason); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// spoolFiles is files(t, dir) with the X directory and each id replaced
// by a name, so expectations read like the layout.
func spoolFiles(t *testing.T, dir string, names map[ID]string) []string {
	t.Helper()
	var out []string
	for _, f := range files(t, dir) {
		parts := strings.Split(filepath.ToSlash(f), "/")
		if len(parts) == 3 {
			parts[1] = "X"
		}
		f = strings.Join(parts, "/")
		for id, name := range names {
			f = strings.ReplaceAll(f, string(id), name)
		}
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

func TestQuarantineRoundTrip(t *testing.T) {
	s, dir := openSpool(t)
	env := testEnvelope()
	id := quarantineMessage(t, s, env, testBody, "virus Eicar-Test-Signature")
	names := map[ID]string{id: "ID"}

	if got, want := spoolFiles(t, dir, names), []string{"quarantine/X/ID-D", "quarantine/X/ID-H", "quarantine/X/ID-R"}; !slices.Equal(got, want) {
		t.Fatalf("after Quarantine: files %q, want %q", got, want)
	}
	if ids, err := s.List(); err != nil || len(ids) != 0 {
		t.Errorf("queue List = %v, %v; a quarantined message must not be queued", ids, err)
	}
	var wantH bytes.Buffer
	if err := WriteHeaderFile(&wantH, env); err != nil {
		t.Fatal(err)
	}
	if got, err := s.QuarantineHeaderFile(id); err != nil || string(got) != wantH.String() {
		t.Errorf("QuarantineHeaderFile = %q, %v; want %q", got, err, wantH.String())
	}
	body, err := s.QuarantineOpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, body); got != testBody {
		t.Errorf("QuarantineOpenBody = %q, want %q", got, testBody)
	}
	list, err := s.QuarantineList()
	if err != nil || len(list) != 1 {
		t.Fatalf("QuarantineList = %v, %v; want one entry", list, err)
	}
	e := list[0]
	// Headers sent (Received 97, Subject 15, From 25; X-Old is deleted),
	// the blank line, the 39-byte body.
	if e.Envelope.ID != id || e.Envelope.Sender != "alice@example.test" || e.Reason != "virus Eicar-Test-Signature" ||
		e.Size != 97+15+25+1+int64(len(testBody)) || e.Envelope.BodyLinecount != 4 || e.Quarantined.IsZero() {
		t.Errorf("entry = %+v (size %d), envelope %+v", e, e.Size, e.Envelope)
	}

	released, err := s.QuarantineRelease(id)
	if err != nil {
		t.Fatal(err)
	}
	if released.ID != id || released.Sender != env.Sender {
		t.Errorf("QuarantineRelease returned %+v", released)
	}
	if got, want := spoolFiles(t, dir, names), []string{"input/X/ID-D", "input/X/ID-H"}; !slices.Equal(got, want) {
		t.Errorf("after QuarantineRelease: files %q, want %q", got, want)
	}
	if ids, err := s.List(); err != nil || !slices.Equal(ids, []ID{id}) {
		t.Errorf("queue List = %v, %v; want the released message", ids, err)
	}
	loaded, err := s.Load(id)
	if err != nil || loaded.Sender != env.Sender || !slices.Equal(loaded.Recipients, env.Recipients) || !loaded.NextTry.IsZero() {
		t.Errorf("Load after release = %+v, %v", loaded, err)
	}
	msg, _, err := s.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, msg); !strings.HasSuffix(got, "From: alice@example.test\n\n"+testBody) {
		t.Errorf("released message = %q", got)
	}
	if list, err := s.QuarantineList(); err != nil || len(list) != 0 {
		t.Errorf("QuarantineList after release = %v, %v; want empty", list, err)
	}
}

func TestQuarantineDelete(t *testing.T) {
	s, dir := openSpool(t)
	id := quarantineMessage(t, s, testEnvelope(), testBody, "spam score 9.0")
	if err := s.QuarantineDelete(id); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("after QuarantineDelete: files %q, want none", got)
	}
	if err := s.QuarantineDelete(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second QuarantineDelete = %v, want ErrNotFound", err)
	}
}

func TestQuarantineRefusals(t *testing.T) {
	s, _ := openSpool(t)
	quarantined := quarantineMessage(t, s, testEnvelope(), testBody, "virus X")
	queued := commit(t, s, testEnvelope(), testBody)
	ops := map[string]func(ID) error{
		"release": func(id ID) error { _, err := s.QuarantineRelease(id); return err },
		"release for": func(id ID) error {
			_, err := s.QuarantineReleaseFor(context.Background(), id, "bob@example.test")
			return err
		},
		"delete for": func(id ID) error { _, err := s.QuarantineDeleteFor(id, "bob@example.test"); return err },
		"delete":     s.QuarantineDelete,
		"load":       func(id ID) error { _, err := s.QuarantineLoad(id); return err },
		"body":       func(id ID) error { _, err := s.QuarantineOpenBody(id); return err },
	}
	for name, op := range ops {
		for _, tc := range []struct {
			id   ID
			want error
		}{
			{"../../../etc/pa", ErrNotFound},
			{"1s26kb-000001-0/", ErrNotFound},
			{"1s26kb-000001-00", ErrNotFound},
			{queued, ErrNotFound}, // in the queue, not in quarantine
		} {
			if err := op(tc.id); !errors.Is(err, tc.want) {
				t.Errorf("%s %q = %v, want %v", name, tc.id, err, tc.want)
			}
		}
	}
	// Another process handling the quarantined message holds its lock.
	f, err := lockData(s.quarantinePath(quarantined, "-D"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"release", "delete", "release for", "delete for"} {
		if err := ops[name](quarantined); !errors.Is(err, ErrLocked) {
			t.Errorf("%s of a locked message = %v, want ErrLocked", name, err)
		}
	}
	f.Close()
	if _, err := s.QuarantineLoad(quarantined); err != nil {
		t.Errorf("the refused operations changed the message: %v", err)
	}
}

func TestQuarantineReleaseIntoOccupiedID(t *testing.T) {
	s, dir := openSpool(t)
	id := quarantineMessage(t, s, testEnvelope(), testBody, "virus X")
	// A damaged spool: the queue already has files under the id.
	if err := os.WriteFile(s.path(id, "-D"), []byte(string(id)+"-D\nother\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := s.QuarantineRelease(id)
	if err == nil || !strings.Contains(err.Error(), "message "+string(id)+" is already in the queue") {
		t.Errorf("QuarantineRelease = %v, want the conflict named", err)
	}
	names := map[ID]string{id: "ID"}
	if got, want := spoolFiles(t, dir, names), []string{"input/X/ID-D", "quarantine/X/ID-D", "quarantine/X/ID-H", "quarantine/X/ID-R"}; !slices.Equal(got, want) {
		t.Errorf("after the refused release: files %q, want %q", got, want)
	}
}

func TestQuarantineReasonIsOneLine(t *testing.T) {
	s, _ := openSpool(t)
	for reason, want := range map[string]string{
		"virus X\r\nX-Injected: yes": "virus X  X-Injected: yes",
		"  \t ":                      "no reason given",
		"spam score 12.3":            "spam score 12.3",
	} {
		id := quarantineMessage(t, s, testEnvelope(), testBody, reason)
		e, err := s.QuarantineLoad(id)
		if err != nil || e.Reason != want {
			t.Errorf("reason %q stored as %+v, %v; want %q", reason, e, err, want)
		}
	}
}

func TestQuarantineCancelledLeavesNothing(t *testing.T) {
	s, dir := openSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testBody))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Quarantine(ctx, w, testEnvelope(), "virus X"); !errors.Is(err, context.Canceled) {
		t.Errorf("Quarantine with a cancelled context = %v, want context.Canceled", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("after a failed Quarantine: files %q, want none", got)
	}
	if err := s.Quarantine(context.Background(), w, testEnvelope(), "virus X"); err == nil {
		t.Error("Quarantine after a failed one succeeded; the writer is spent")
	}
}

func TestOpenRemovesQuarantineOrphans(t *testing.T) {
	s, dir := openSpool(t)
	kept := quarantineMessage(t, s, testEnvelope(), testBody, "virus kept")
	released := quarantineMessage(t, s, testEnvelope(), testBody, "virus released")
	// A release that linked both files into input/ and then died.
	for _, suffix := range []string{"-D", "-H"} {
		if err := os.Link(s.quarantinePath(released, suffix), s.path(released, suffix)); err != nil {
			t.Fatal(err)
		}
	}
	const crashed, partial = "1s26kb-000001-00", "1s26kc-000002-00"
	q := func(id, name string) string { return filepath.Join(dir, "quarantine", id[5:6], name) }
	for _, p := range []string{
		q(crashed, crashed+"-D"), q(crashed, crashed+"-R"), q(crashed, "hdr."+crashed), // a commit died before its -H
		q(partial, partial+"-R"), // ...or before linking the -D
	} {
		if err := os.WriteFile(p, []byte("x\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	names := map[ID]string{kept: "KEPT", released: "RELEASED"}
	want := []string{"input/X/RELEASED-D", "input/X/RELEASED-H", "quarantine/X/KEPT-D", "quarantine/X/KEPT-H", "quarantine/X/KEPT-R"}
	if got := spoolFiles(t, dir, names); !slices.Equal(got, want) {
		t.Errorf("after Open:\n got %q\nwant %q", got, want)
	}
}

// TestQuarantinePerRecipient follows one message with three recipients
// through the digest's operations: a release for one queues a copy for
// it alone, a delete for another removes only that one, the last
// release moves the message itself, and nothing is done twice.
func TestQuarantinePerRecipient(t *testing.T) {
	ctx := context.Background()
	s, dir := openSpool(t)
	env := testEnvelope() // bob, carol, dave
	id := quarantineMessage(t, s, env, testBody, "spam score 12 >= quarantine 5")

	c, err := s.QuarantineReleaseFor(ctx, id, "Carol@Example.Test")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == id || !slices.Equal(c.Recipients, []string{"carol@example.test"}) || !c.Received.Equal(env.Received) || c.Sender != env.Sender {
		t.Errorf("the copy's envelope = %+v", c)
	}
	names := map[ID]string{id: "ID", c.ID: "COPY"}
	if got, want := spoolFiles(t, dir, names), []string{"input/X/COPY-D", "input/X/COPY-H", "quarantine/X/ID-D", "quarantine/X/ID-H", "quarantine/X/ID-R"}; !slices.Equal(got, want) {
		t.Errorf("after the release for carol: files %q, want %q", got, want)
	}
	msg, _, err := s.OpenMessage(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, msg); !strings.HasSuffix(got, "Subject: hello\nFrom: alice@example.test\n\n"+testBody) {
		t.Errorf("queued copy = %q", got)
	}
	if e, err := s.QuarantineLoad(id); err != nil || !slices.Equal(e.Envelope.Pending(), []string{"bob@example.test", "dave@example.test"}) {
		t.Errorf("quarantined after the release for carol: %+v, %v; want bob and dave pending", e, err)
	}
	for name, op := range map[string]func() error{
		"release for carol again": func() error { _, err := s.QuarantineReleaseFor(ctx, id, "carol@example.test"); return err },
		"delete for carol":        func() error { _, err := s.QuarantineDeleteFor(id, "carol@example.test"); return err },
		"release for a stranger":  func() error { _, err := s.QuarantineReleaseFor(ctx, id, "eve@example.test"); return err },
	} {
		if err := op(); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", name, err)
		}
	}

	if left, err := s.QuarantineDeleteFor(id, "bob@example.test"); err != nil || left != 1 {
		t.Errorf("delete for bob = %d, %v; want 1 left", left, err)
	}
	last, err := s.QuarantineReleaseFor(ctx, id, "dave@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if last.ID != id {
		t.Errorf("the last recipient's release queued %s, want the message itself %s", last.ID, id)
	}
	if got, want := spoolFiles(t, dir, names), []string{"input/X/COPY-D", "input/X/COPY-H", "input/X/ID-D", "input/X/ID-H"}; !slices.Equal(got, want) {
		t.Errorf("after the last release: files %q, want %q", got, want)
	}
	if q, err := s.Load(id); err != nil || !slices.Equal(q.Pending(), []string{"dave@example.test"}) {
		t.Errorf("the released message: %+v, %v; want dave alone pending", q, err)
	}
}

func TestQuarantineDeleteForLast(t *testing.T) {
	s, dir := openSpool(t)
	env := testEnvelope()
	env.Recipients = env.Recipients[:1]
	id := quarantineMessage(t, s, env, testBody, "spam")
	if left, err := s.QuarantineDeleteFor(id, "bob@example.test"); err != nil || left != 0 {
		t.Errorf("delete for the only recipient = %d, %v", left, err)
	}
	if got := spoolFiles(t, dir, nil); len(got) != 0 {
		t.Errorf("after deleting the last recipient: files %q, want none", got)
	}
}

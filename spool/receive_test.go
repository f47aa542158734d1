package spool

import (
	"context"
	"errors"
	"os"
	"regexp"
	"testing"
)

type testLog struct{ main, panic []string }

func (l *testLog) Main(id, text string) { l.main = append(l.main, id+" "+text) }
func (l *testLog) Panic(text string)    { l.panic = append(l.panic, text) }

func TestReceive(t *testing.T) {
	s, _ := openSpool(t)
	for _, sender := range []string{"alice@example.test", ""} {
		w, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(testBody))
		env := testEnvelope()
		env.Sender = sender
		log := &testLog{}
		if err := w.Receive(context.Background(), env, "U=root P=local S=123", log); err != nil {
			t.Fatal(err)
		}
		want := sender
		if sender == "" {
			want = "<>"
		}
		if len(log.main) != 1 || log.main[0] != string(w.ID())+" <= "+want+" U=root P=local S=123" || len(log.panic) != 0 {
			t.Errorf("logged %q, panic %q", log.main, log.panic)
		}
		b, err := os.ReadFile(s.MsglogPath(w.ID()))
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Received from ` + regexp.QuoteMeta(want) + ` U=root P=local S=123\n$`)
		if !re.Match(b) {
			t.Errorf("msglog = %q", b)
		}
		if _, err := s.Load(w.ID()); err != nil {
			t.Errorf("not committed: %v", err)
		}
	}
}

func TestReceiveCommitFails(t *testing.T) {
	s, _ := openSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	log := &testLog{}
	if err := w.Receive(ctx, testEnvelope(), "P=local S=1", log); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if len(log.main)+len(log.panic) != 0 {
		t.Errorf("logged %q %q for a message that does not exist", log.main, log.panic)
	}
	if _, err := os.Stat(s.MsglogPath(w.ID())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("msglog written for a failed commit: %v", err)
	}
	// A nil Logger logs nothing and still commits.
	w, err = s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Receive(context.Background(), testEnvelope(), "P=local S=1", nil); err != nil {
		t.Fatal(err)
	}
}

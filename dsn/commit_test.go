package dsn

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mxgate/spool"
)

// lines is a spool.Logger that keeps the mainlog lines.
type lines []string

func (l *lines) Main(id, text string) { *l = append(*l, id+" "+text) }
func (l *lines) Panic(text string)    { *l = append(*l, "PANIC "+text) }

func TestCommit(t *testing.T) {
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.Options{Sync: spool.SyncFdatasync})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()

	var log lines
	r := report(bob)
	r.MessageID, r.Boundary = "", ""
	id, err := Commit(context.Background(), sp, &log, Failure, r)
	if err != nil {
		t.Fatal(err)
	}
	env, err := sp.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "" || !slices.Equal(env.Recipients, []string{"alice@up.test"}) || env.ReceivedProtocol != "local" || !env.Received.Equal(date) {
		t.Errorf("envelope from %q to %q, protocol %q, received %v", env.Sender, env.Recipients, env.ReceivedProtocol, env.Received)
	}
	if !slices.Contains(env.Headers, header("Message-Id", "<E"+string(id)+"@mx.example.test>")) {
		t.Errorf("headers lack Message-Id <E%s@mx.example.test>: %q", id, env.Headers)
	}
	_, size, err := sp.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fmt.Sprintf("%s <= <> R=0t5C6f-0000c8-00 U=%s P=local S=%d", id, User(), size)}; !slices.Equal(log, want) {
		t.Errorf("logged %q, want %q", log, want)
	}

	// A report that cannot be built leaves nothing behind.
	log = nil
	r.Recipients = nil
	if _, err := Commit(context.Background(), sp, &log, Failure, r); err == nil || !strings.Contains(err.Error(), "about no recipient") {
		t.Errorf("Commit without recipients: %v", err)
	}
	boom := errors.New("boom")
	if _, err := Commit(context.Background(), sp, &log, func(*Report) (*Message, error) { return nil, boom }, report(bob)); !errors.Is(err, boom) {
		t.Errorf("Commit with a failing build: %v", err)
	}
	if ids, err := sp.List(); err != nil || !slices.Equal(ids, []spool.ID{id}) || len(log) != 0 {
		t.Errorf("spool %v (%v), log %q; want only %s", ids, err, log, id)
	}
}

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/state"
)

// TestSharedVerifyCache: two gateways on one real redis-server ([state]
// url), verifying recipients at one Dovecot. An unknown user the first
// looked up is refused by the second after the store has gone down, from
// the shared cache; an address neither looked up gets the second's 451.
// With Redis no gateway creates the embedded store's data_dir/db/state.db.
func TestSharedVerifyCache(t *testing.T) {
	t.Parallel()
	redisURL := peertest.Redis(t)
	d := startDovecotUsers(t)
	b, err := os.ReadFile(verifyConfig(t, "dovecot:"+d.socket()))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(t.TempDir(), "shared.toml.tmpl")
	if err := os.WriteFile(tmpl, append(b, []byte("\n[state]\nurl = \""+redisURL+"\"\ntimeout = \"1s\"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	one := startMxgateConfig(t, tmpl, d.URL())
	two := startMxgateConfig(t, tmpl, d.URL())

	if got := rcpt(t, one, "nobody@example.test"); got != unknownReply {
		t.Fatalf("node 1: RCPT unknown user -> %q, want %q", got, unknownReply)
	}
	// The answer reaches Redis behind the reply: wait for it there.
	st, err := state.Open(state.Options{URL: redisURL, Timeout: time.Second, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := st.Keys(context.Background(), "rcpt:")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis holds %q under rcpt:, want the one answer of node 1", keys)
		}
		time.Sleep(20 * time.Millisecond)
	}

	d.stop(t)
	if got := rcpt(t, two, "nobody@example.test"); got != unknownReply {
		t.Errorf("node 2, store down: RCPT the user node 1 looked up -> %q, want %q (the shared answer)", got, unknownReply)
	}
	if got := rcpt(t, two, "carol@example.test"); got != storeDownReply {
		t.Errorf("node 2, store down: RCPT a new address -> %q, want %q", got, storeDownReply)
	}
	for _, g := range []*mxgate{one, two} {
		if _, err := os.Stat(filepath.Join(g.dataDir, "db", "state.db")); !os.IsNotExist(err) {
			t.Errorf("%s/db/state.db: %v, want none with a Redis store", g.dataDir, err)
		}
	}
}

// TestEmbeddedStateFile: without [state] url the daemon keeps its state
// in data_dir/db/state.db, created at start.
func TestEmbeddedStateFile(t *testing.T) {
	t.Parallel()
	d := startDovecotUsers(t)
	g := startMxgateConfig(t, verifyConfig(t, "dovecot:"+d.socket()), d.URL())
	if _, err := os.Stat(filepath.Join(g.dataDir, "db", "state.db")); err != nil {
		t.Errorf("embedded state store: %v", err)
	}
}

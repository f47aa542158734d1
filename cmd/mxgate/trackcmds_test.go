package main

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxgate/config"
	"mxgate/event"
	"mxgate/tracking"
)

var update = flag.Bool("update", false, "rewrite the testdata golden files")

func TestParseTrack(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		args    []string
		want    trackArgs
		wantErr string
	}{
		{nil, trackArgs{}, ""},
		{[]string{"--sender", "@example.com", "--since", "24h"}, trackArgs{q: tracking.Query{Sender: "@example.com", Since: now.Add(-24 * time.Hour)}}, ""},
		{[]string{"--rcpt", "bob@x.test", "--client", "192.0.2.0/24", "--verdict", "rejected", "--since", "7d", "--until", "2026-03-04T10:30"},
			trackArgs{q: tracking.Query{Recipient: "bob@x.test", Client: "192.0.2.0/24", Verdict: "rejected", Since: now.Add(-7 * 24 * time.Hour),
				Until: time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)}}, ""},
		{[]string{"--id", "1abcde-000001-AB", "--msgid", "<m@x>", "--limit", "10", "--before", "99", "--json"},
			trackArgs{q: tracking.Query{ID: "1abcde-000001-AB", MessageID: "<m@x>", Limit: 10, Before: 99}, json: true}, ""},
		{[]string{"--since", "2026-03-01"}, trackArgs{q: tracking.Query{Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}}, ""},
		{[]string{"--since", "2026-03-01T08:00:00Z"}, trackArgs{q: tracking.Query{Since: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}}, ""},
		{[]string{"1abcde-000001-AB"}, trackArgs{key: "1abcde-000001-AB"}, ""},
		{[]string{"--json", "#12"}, trackArgs{key: "#12", json: true}, ""},
		{[]string{"--since", "yesterday"}, trackArgs{}, `track: --since: "yesterday" is neither a duration (24h, 7d) nor a time (2006-01-02T15:04): usage`},
		{[]string{"--until", "-1h"}, trackArgs{}, `track: --until: "-1h" is negative: usage`},
		{[]string{"--verdict", "spam"}, trackArgs{}, `track: unknown verdict "spam" (want one of accepted, rejected, tempfailed, quarantined, discarded, delivered, deferred, bounced, released, deleted, removed): usage`},
		{[]string{"--limit", "5000"}, trackArgs{}, `track: --limit must be 1 to 1000: usage`},
		{[]string{"--sender", "a@b", "ID"}, trackArgs{}, `track: give an ID or search flags, not both: usage`},
		{[]string{"ID1", "ID2"}, trackArgs{}, `track: unexpected argument "ID2": usage`},
		{[]string{"--nosuch"}, trackArgs{}, `track: flag provided but not defined: -nosuch: usage`},
	}
	for _, tt := range tests {
		got, err := parseTrack(tt.args, now)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, errUsage) {
				t.Errorf("%q: error %v, want %s", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %+v, %v; want %+v", tt.args, got, err, tt.want)
		}
	}
}

// trackEvents is a day of a small gateway: a delivered message, a
// refusal by a DNS list, a quarantined virus.
func trackEvents(t0 time.Time) []event.Event {
	c1, c2 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.9")
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	return []event.Event{
		{Kind: event.Connect, Time: at(0), Conn: "c1", Client: c1, HostName: "client.example", Listener: "smtp"},
		{Kind: event.Check, Time: at(time.Second), Conn: "c1", Txn: 1, Check: "spamd", Stage: "data", Action: "accept", Score: 1.5, Scored: true, Duration: 120 * time.Millisecond,
			Reason: "spamd score=1.5 required=5.0"},
		{Kind: event.Accepted, Time: at(time.Second), Conn: "c1", Txn: 1, ID: "1tXyZa-000AbC-Qr", Sender: "alice@example.com", Recipients: []string{"bob@example.test"},
			Size: 4096, Subject: "Quarterly report", MessageID: "<r1@example.com>", Source: "smtp", Score: 1.5, Scored: true, Helo: "client.example"},
		{Kind: event.Disconnect, Time: at(2 * time.Second), Conn: "c1"},
		{Kind: event.Delivery, Time: at(3 * time.Second), ID: "1tXyZa-000AbC-Qr", Recipient: "bob@example.test", Outcome: event.Delivered,
			Transport: "downstream", Host: "[127.0.0.1]:2600", Reply: "250 2.0.0 Ok", Delay: 2 * time.Second},
		{Kind: event.Completed, Time: at(3 * time.Second), ID: "1tXyZa-000AbC-Qr"},
		{Kind: event.Connect, Time: at(time.Hour), Conn: "c2", Client: c2, Listener: "smtp", Helo: "spammer"},
		{Kind: event.Refused, Time: at(time.Hour + time.Second), Conn: "c2", Txn: 1, Stage: "rcpt", Sender: "offers@bad.example", Recipient: "bob@example.test",
			Code: 554, Enhanced: "5.7.1", Text: "Service unavailable; client [198.51.100.9] blocked using bl.example", ReasonCode: "rbl", Check: "rbl", List: "bl.example"},
		{Kind: event.Disconnect, Time: at(time.Hour + 2*time.Second), Conn: "c2"},
		{Kind: event.Quarantined, Time: at(2 * time.Hour), ID: "1tXzAb-000BcD-St", Sender: "carol@example.org", Recipients: []string{"bob@example.test"},
			Size: 900, Subject: "invoice", Check: "clamd", ReasonCode: "virus", Reason: "virus Eicar-Test-Signature", Virus: "Eicar-Test-Signature", Client: c1},
	}
}

func TestTrackCommands(t *testing.T) {
	q := newQueueTest(t)
	cfg, err := config.Load(q.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r := q.mxgate("mxgate", "track"); r.code != 1 || r.stderr == "" {
		t.Errorf("track without a database: %+v", r)
	}
	// The events are of queueNow, in 2024: the retention sweep must not
	// take them.
	cfg.Tracking.Retention = 0
	s, err := openTracking(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := queueNow.UTC().Add(-3 * time.Hour)
	for _, e := range trackEvents(t0) {
		s.Event(&e)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		golden string
		args   []string
	}{
		{"track-all.txt", []string{"track"}},
		{"track-page.txt", []string{"track", "--limit", "2"}},
		{"track-sender.txt", []string{"track", "--sender", "@BAD.example", "--since", "24h"}},
		{"track-none.txt", []string{"track", "--verdict", "bounced"}},
		{"track-timeline.txt", []string{"track", "1tXyZa-000AbC-Qr"}},
		{"track-refused.txt", []string{"track", "#2"}},
		{"track-json.txt", []string{"track", "--json", "--client", "198.51.100.0/24"}},
		{"stats.txt", []string{"stats", "--since", "4h"}},
	}
	for _, tt := range tests {
		r := q.mxgate("mxgate", tt.args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%q: status %d, stderr %s", tt.args, r.code, r.stderr)
		}
		golden(t, filepath.Join("testdata", tt.golden), r.stdout)
	}
	if r := q.mxgate("mxgate", "track", "nosuch"); r.code != 1 || r.stderr != "mxgate: tracking: nosuch: tracking: no such message\n" {
		t.Errorf("track nosuch: %+v", r)
	}
}

// golden compares got with a testdata file (-update rewrites it).
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", path, got, want)
	}
}

// TestOpenTrackingOwner: serve opens the database as root, before its
// privilege drop; the files must be the daemon user's.
func TestOpenTrackingOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (tests run as root here and in CI)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := reachableTempDir(t)
	cfg := &config.Config{Hostname: "mx.test", User: "nobody", UID: uid, GID: gid,
		Tracking: config.Tracking{URL: "sqlite:" + filepath.Join(dir, "db", "tracking.db"), Queue: 10}}
	s, err := openTracking(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, f := range []string{"tracking.db", "tracking.db-wal", "tracking.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, "db", f))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", f, st.Uid, st.Gid, uid, gid)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode %v, want 0640", f, fi.Mode().Perm())
		}
	}
	off, err := openTracking(context.Background(), &config.Config{Tracking: config.Tracking{URL: "none"}}, nil)
	if err != nil || off != nil {
		t.Errorf("url none: %v, %v", off, err)
	}
	off.Event(&event.Event{Kind: event.Connect}) // a nil store records nothing
}

// reachableTempDir is a t.TempDir that every user can search: Go makes
// it and its parent 0700, out of reach of the daemon's user.
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestOpenTrackingUserDir: a SQLite directory that exists but the
// daemon's user cannot write, or reach, is refused at start with a
// message naming it and the user, rather than when SQLite makes its -wal
// and -shm as the user later.
func TestOpenTrackingUserDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (tests run as root here and in CI)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, tt := range []struct {
		name string
		// mode and owner of DIR/db, and the mode of DIR
		mode, top os.FileMode
		uid, gid  int
		want      string // "" opens; else the error names db and says this
		blocked   bool   // DIR is named as not searchable
		// DIR is data_dir: serve gives it to the user before the drop
		inDataDir bool
	}{
		{name: "root's 0755", mode: 0o755, top: 0o755, want: "is not writable by user nobody (uid " + u.Uid + ")"},
		{name: "the user's", mode: 0o700, top: 0o755, uid: uid, gid: 0},
		{name: "group-writable", mode: 0o770, top: 0o755, gid: gid},
		{name: "group read-only", mode: 0o750, top: 0o755, gid: gid, want: "is not writable by user nobody"},
		{name: "parent closed", mode: 0o700, top: 0o700, uid: uid, want: "is out of reach of user nobody", blocked: true},
		{name: "root's 0755 in data_dir", mode: 0o755, top: 0o755, inDataDir: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			top := reachableTempDir(t)
			db := filepath.Join(top, "db")
			if err := os.Mkdir(db, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(db, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			if err := os.Chown(db, tt.uid, tt.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(top, tt.top); err != nil {
				t.Fatal(err)
			}
			cfg := &config.Config{Hostname: "mx.test", User: "nobody", UID: uid, GID: gid,
				Tracking: config.Tracking{URL: "sqlite:" + filepath.Join(db, "tracking.db"), Queue: 10}}
			if tt.inDataDir {
				cfg.DataDir = top
			}
			s, err := openTracking(context.Background(), cfg, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("openTracking: %v", err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("openTracking opened %s, want it refused: %s", db, tt.want)
			}
			if msg := err.Error(); !strings.Contains(msg, "directory "+db+" ") || !strings.Contains(msg, tt.want) ||
				tt.blocked && !strings.Contains(msg, top+" is not searchable") {
				t.Errorf("openTracking: %v; want it to name %s and say %q", err, db, tt.want)
			}
			if _, err := os.Stat(filepath.Join(db, "tracking.db")); err == nil {
				t.Error("the refused database was created")
			}
		})
	}
}

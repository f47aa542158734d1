package spool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestCheckSpace(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                string
		minBytes, minInodes int64
		space               Space
		statErr             error
		size                int64
		short               bool
		wantText            string
	}{
		{"plenty", 100 * mib, 1000, Space{Bytes: 500 * mib, Inodes: 50000}, nil, 10 * mib, false, ""},
		{"below the space reserve", 100 * mib, 1000, Space{Bytes: 99 * mib, Inodes: 50000}, nil, 0, true,
			"spool directory space = 101376K inodes = 50000 check_space = 102400K inodes = 1000 msg_size = 0"},
		{"SIZE eats the reserve", 100 * mib, 1000, Space{Bytes: 110 * mib, Inodes: 50000}, nil, 11 * mib, true,
			"spool directory space = 112640K inodes = 50000 check_space = 102400K inodes = 1000 msg_size = 11534336"},
		{"SIZE just fits", 100 * mib, 1000, Space{Bytes: 110 * mib, Inodes: 50000}, nil, 10 * mib, false, ""},
		{"negative SIZE counts as none", 100 * mib, 0, Space{Bytes: 110 * mib}, nil, -1, false, ""},
		{"below the inode reserve", 100 * mib, 1000, Space{Bytes: 500 * mib, Inodes: 999}, nil, 0, true,
			"spool directory space = 512000K inodes = 999 check_space = 102400K inodes = 1000 msg_size = 0"},
		{"no inode limit (btrfs)", 100 * mib, 1000, Space{Bytes: 500 * mib, NoInodeLimit: true}, nil, 0, false, ""},
		{"space check off", 0, 1000, Space{Bytes: 0, Inodes: 5000}, nil, 10 * mib, false, ""},
		{"inode check off", 100 * mib, 0, Space{Bytes: 500 * mib, Inodes: 0}, nil, 0, false, ""},
		{"both off: statfs never asked", 0, 0, Space{}, errors.New("must not be called"), 0, false, ""},
		{"statfs fails", 100 * mib, 1000, Space{}, errors.New("statfs /spool: input/output error"), 0, true,
			"spool directory space check failed: statfs /spool: input/output error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			o.MinFreeSpace, o.MinFreeInodes = tt.minBytes, tt.minInodes
			o.StatFS = func(string) (Space, error) { return tt.space, tt.statErr }
			s, _ := openSpoolWith(t, o)
			short := s.CheckSpace(tt.size)
			if (short != nil) != tt.short {
				t.Fatalf("CheckSpace(%d) = %v, want a shortage: %v", tt.size, short, tt.short)
			}
			if short != nil && short.Error() != tt.wantText {
				t.Errorf("shortage %q, want %q", short.Error(), tt.wantText)
			}
		})
	}
}

// TestCheckSpaceCached: a MAIL per millisecond costs one statfs a second.
func TestCheckSpaceCached(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	o := testOptions()
	o.MinFreeSpace, o.MinFreeInodes = 1<<20, 10
	o.StatFS = func(string) (Space, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return Space{Bytes: 1 << 30, Inodes: 1 << 20}, nil
	}
	s, _ := openSpoolWith(t, o)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if short := s.CheckSpace(0); short != nil {
				t.Errorf("CheckSpace: %v", short)
			}
		})
	}
	wg.Wait()
	if calls != 1 {
		t.Errorf("statfs called %d times for 50 checks within a second, want 1", calls)
	}
}

// TestStatFS asks the real filesystem of a temporary directory.
func TestStatFS(t *testing.T) {
	sp, err := StatFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if sp.Bytes == 0 {
		t.Errorf("StatFS = %+v: no free bytes on the test's temporary directory?", sp)
	}
	if _, err := StatFS(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "statfs") {
		t.Errorf("StatFS of a missing directory: %v, want a statfs error", err)
	}
}

// panicLog records what the spool writes to the paniclog.
type panicLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *panicLog) Main(string, string) {}
func (l *panicLog) Panic(text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, text)
}

func (l *panicLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// corruptions are -H files a crash, a full disk or a hand edit leaves:
// each must be set aside with the line of the damage.
var corruptions = []struct {
	name   string
	damage func(h string) string
	line   string
}{
	{"cut short in the recipients", func(h string) string { return h[:strings.Index(h, "carol@")] }, "line 15: file ends where recipient 2 of 3 was expected"},
	{"zeros from a crash", func(h string) string { return strings.Repeat("\x00", len(h)) }, "line 1: the id line: no newline at end of file"},
	{"empty", func(string) string { return "" }, "line 1: file ends where the id line was expected"},
	{"another message's", func(h string) string { return "1tXyZa-000AbC-Qr" + h[idLen:] },
		"line 1: file is for message 1tXyZa-000AbC-Qr"},
	{"hand edit", func(h string) string { return strings.Replace(h, "-body_linecount", "-body_lines", 1) }, `line 9: unknown option "-body_lines"`},
}

func TestCorruptHeaderSetAside(t *testing.T) {
	for _, tt := range corruptions {
		t.Run(tt.name, func(t *testing.T) {
			log := &panicLog{}
			o := testOptions()
			o.Log = log
			s, dir := openSpoolWith(t, o)
			env := testEnvelope()
			env.Done = []string{"bob@example.test"}
			id := commit(t, s, env, testBody)
			if err := s.Msglog(id, "Received"); err != nil {
				t.Fatal(err)
			}
			if err := s.Journal(id, "carol@example.test"); err != nil {
				t.Fatal(err)
			}
			hpath := s.path(id, "-H")
			h, err := os.ReadFile(hpath)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(hpath, []byte(tt.damage(string(h))), 0o640); err != nil {
				t.Fatal(err)
			}

			_, err = s.Load(id)
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNotFound) {
				t.Fatalf("Load = %v, want a CorruptError, set aside (ErrNotFound)", err)
			}
			want := string(id) + " spool format error in " + hpath + ": " + tt.line + "; set aside in " + filepath.Join(dir, "corrupt") + "/"
			if got := log.all(); len(got) != 1 || got[0] != want {
				t.Errorf("paniclog %q,\nwant %q", got, want)
			}
			x := string(id[5])
			wantFiles := []string{"corrupt/" + string(id) + "-D", "corrupt/" + string(id) + "-H", "corrupt/" + string(id) + "-J", "corrupt/" + string(id) + "-msglog"}
			if got := files(t, dir); !slices.Equal(got, wantFiles) {
				t.Errorf("spool files %q, want %q (nothing left in input/%s or msglog/%s)", got, wantFiles, x, x)
			}

			// Reported once: every later reader finds no message.
			for range 2 {
				if _, err := s.Load(id); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
					t.Errorf("Load after the set-aside = %v, want plain ErrNotFound", err)
				}
			}
			if _, _, err := s.OpenMessage(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("OpenMessage = %v, want ErrNotFound", err)
			}
			if n, err := s.Count(); err != nil || n != 0 {
				t.Errorf("Count = %d, %v, want 0", n, err)
			}
			if ids, err := s.Corrupt(); err != nil || !slices.Equal(ids, []ID{id}) {
				t.Errorf("Corrupt = %v, %v, want [%s]", ids, err, id)
			}
			if len(log.all()) != 1 {
				t.Errorf("paniclog %q, want the one line", log.all())
			}
			// Open again (a restart) keeps the files where they are.
			s2, err := Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			s2.Close()
			if got := files(t, dir); !slices.Equal(got, wantFiles) {
				t.Errorf("after Open: spool files %q, want %q", got, wantFiles)
			}
		})
	}
}

// TestCorruptHeaderLocked: a reader that finds the message locked by
// another process leaves it to the holder; the holder (through Lock)
// sets it aside without waiting for its own lock.
func TestCorruptHeaderLocked(t *testing.T) {
	log := &panicLog{}
	o := testOptions()
	o.Log = log
	s, _ := openSpoolWith(t, o)
	id := commit(t, s, testEnvelope(), testBody)
	if err := os.WriteFile(s.path(id, "-H"), []byte("garbage\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	other, err := lockData(s.path(id, "-D")) // as another process would
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(id); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) {
		t.Errorf("Load under another's lock = %v, want ErrCorrupt, not set aside", err)
	}
	if len(log.all()) != 0 {
		t.Errorf("paniclog %q, want nothing until it is set aside", log.all())
	}
	other.Close()

	unlock, err := s.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := s.Load(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load under its own lock = %v, want it set aside", err)
	}
	if got := log.all(); len(got) != 1 || !strings.Contains(got[0], `line 1: "garbage" is not a message id followed by -H`) {
		t.Errorf("paniclog %q", got)
	}
	if _, err := os.Stat(filepath.Join(s.CorruptDir(), string(id)+"-D")); err != nil {
		t.Errorf("-D not set aside: %v", err)
	}
}

func TestVerifyData(t *testing.T) {
	tests := []struct {
		name string
		cut  int // bytes of the body removed from its end
		old  bool
		want string
	}{
		{"whole", 0, false, ""},
		{"one byte short", 1, false, "spool data file truncated: 38 bytes, -H says 39"},
		{"empty", len(testBody), false, "spool data file truncated: 0 bytes, -H says 39"},
		{"old -H, whole", 0, true, ""},
		{"old -H, short but more bytes than lines", 30, true, ""},
		{"old -H, fewer bytes than lines", 36, true, "spool data file truncated: 3 bytes, -H says 4 lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openSpool(t)
			env := testEnvelope()
			id := commit(t, s, env, testBody)
			if tt.old {
				env.BodySize = 0 // as Load reads a file without -body_size
			}
			if err := os.Truncate(s.path(id, "-D"), int64(dataStart+len(testBody)-tt.cut)); err != nil {
				t.Fatal(err)
			}
			err := s.VerifyData(env)
			var te *TruncatedError
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("VerifyData = %v, want nil", err)
			case tt.want != "" && (!errors.As(err, &te) || err.Error() != tt.want):
				t.Errorf("VerifyData = %v, want %q", err, tt.want)
			}
		})
	}
	s, _ := openSpool(t)
	if err := s.VerifyData(&Envelope{ID: "1tXyZa-000AbC-Qr"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("VerifyData without a -D = %v, want ErrNotExist", err)
	}
}

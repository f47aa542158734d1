package spool

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestFilesAndSizes(t *testing.T) {
	s, dir := openSpool(t)
	if n, err := s.Count(); err != nil || n != 0 {
		t.Fatalf("Count of an empty spool = %d, %v", n, err)
	}
	env := testEnvelope()
	id := commit(t, s, env, testBody)
	commit(t, s, testEnvelope(), "x\n")
	if n, err := s.Count(); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}

	hfile, err := os.ReadFile(filepath.Join(dir, "input", string(id[5]), string(id)+"-H"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.FileSize(id, HeaderFile); err != nil || n != int64(len(hfile)) {
		t.Errorf("FileSize(-H) = %d, %v; want %d", n, err, len(hfile))
	}
	if n, err := s.BodySize(id); err != nil || n != int64(len(testBody)) {
		t.Errorf("BodySize = %d, %v; want %d", n, err, len(testBody))
	}
	loaded, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	_, whole, err := s.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size(loaded); err != nil || n != whole {
		t.Errorf("Size = %d, %v; want OpenMessage's %d", n, err, whole)
	}

	if err := s.Msglog(id, "first"); err != nil {
		t.Fatal(err)
	}
	if err := s.MsglogRaw(id, "*** Frozen (delivery error message)\nforged"); err != nil {
		t.Fatal(err)
	}
	for which, want := range map[File]*regexp.Regexp{
		HeaderFile: regexp.MustCompile("^" + regexp.QuoteMeta(string(hfile)) + "$"),
		DataFile:   regexp.MustCompile("^" + regexp.QuoteMeta(string(id)+"-D\n"+testBody) + "$"),
		MsglogFile: regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d first\n\*\*\* Frozen \(delivery error message\)\\nforged\n$`),
	} {
		rc, err := s.OpenFile(id, which)
		if err != nil {
			t.Fatalf("OpenFile(%v): %v", which, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !want.Match(b) {
			t.Errorf("OpenFile(%v) = %q", which, b)
		}
	}

	if _, err := s.OpenFile(id, JournalFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenFile of a missing journal: %v, want fs.ErrNotExist", err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FileSize(id, DataFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FileSize of a removed message: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.BodySize(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("BodySize of a removed message: %v, want fs.ErrNotExist", err)
	}
	for _, bad := range []ID{"../../etc/passwd", "1xWDX2-0Eipyi-H/"} {
		if _, err := s.OpenFile(bad, HeaderFile); !errors.Is(err, ErrNotFound) {
			t.Errorf("OpenFile(%q): %v, want ErrNotFound", bad, err)
		}
		if _, err := s.FileSize(bad, DataFile); !errors.Is(err, ErrNotFound) {
			t.Errorf("FileSize(%q): %v, want ErrNotFound", bad, err)
		}
		if err := s.MsglogRaw(bad, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("MsglogRaw(%q): %v, want ErrNotFound", bad, err)
		}
	}
	if n, err := s.Count(); err != nil || n != 1 {
		t.Errorf("Count after Remove = %d, %v; want 1", n, err)
	}
}

package rcptverify

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFileLookup(t *testing.T) {
	f := &recipientsFile{path: filepath.Join("testdata", "recipients", "good"), panic: func(s string) { t.Errorf("paniclog: %s", s) }}
	tests := []struct {
		key       string
		lowercase bool
		want      Verdict
	}{
		{"known@example.test", true, Found},
		{"mixed.case@example.test", true, Found},
		{"mixed.case@example.test", false, NotFound},
		{"Mixed.Case@example.test", false, Found},
		{"anyone@catchall.test", true, Found},
		{"last@example.test", true, Found},
		{"nobody@example.test", true, NotFound},
	}
	for _, tc := range tests {
		if r := f.lookup(tc.key, tc.lowercase); r.Verdict != tc.want {
			t.Errorf("lookup(%q, lowercase %v) = %+v, want %v", tc.key, tc.lowercase, r, tc.want)
		}
	}
}

func TestFileParseErrors(t *testing.T) {
	tests := []struct{ file, want string }{
		{"space", "space:3: \"not an address\": one address a line"},
		{"noat", "noat:2: \"just-a-name\" is not local@domain nor @domain"},
	}
	for _, tc := range tests {
		path := filepath.Join("testdata", "recipients", tc.file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = parseRecipients(path, b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseRecipients(%s) = %v, want %q", tc.file, err, tc.want)
		}
	}
}

// TestFileReload: a changed list is used without a restart; a broken
// one leaves the last good list in use and says so in the paniclog,
// naming FILE:LINE; a missing one, at first, defers.
func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "recipients")
	var mu sync.Mutex
	var panics []string
	f := &recipientsFile{path: path, panic: func(s string) { mu.Lock(); panics = append(panics, s); mu.Unlock() }}
	now := time.Now()
	step := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		now = now.Add(recheck)
	}
	check := func(key string, want Verdict) {
		t.Helper()
		list, errText := f.current(now)
		r := Result{Verdict: Defer, Detail: errText}
		if list != nil {
			r = f.lookup(key, true)
		}
		if r.Verdict != want {
			t.Errorf("%s: %+v, want %v", key, r, want)
		}
	}
	check("a@example.test", Defer)
	step("a@example.test\n")
	check("a@example.test", Found)
	check("b@example.test", NotFound)
	step("a@example.test\nb@example.test\n")
	check("b@example.test", Found)
	step("a@example.test\nb@example.test\nbroken line\n")
	check("b@example.test", Found)
	mu.Lock()
	defer mu.Unlock()
	want := path + ":3: \"broken line\""
	if !slices.ContainsFunc(panics, func(s string) bool {
		return strings.Contains(s, want) && strings.Contains(s, "the previous version stays in use")
	}) {
		t.Errorf("paniclog %q, want a line naming %s", panics, want)
	}
}

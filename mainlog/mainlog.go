// Package mainlog owns mxgate's logs in Exim's formats: mainlog, rejectlog
// and paniclog under one directory, one physical line per event
// ("2006-01-02 15:04:05 ID text"), non-printables escaped, reopened on
// demand for log rotation. Optionally each line is also emitted as JSON.
package mainlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// File names inside the log directory. Exim's default log_file_path is
// "%slog" with main, reject and panic.
const (
	MainFile   = "mainlog"
	RejectFile = "rejectlog"
	PanicFile  = "paniclog"
	JSONFile   = "main.json"
)

const (
	stampLayout = "2006-01-02 15:04:05"
	jsonLayout  = "2006-01-02T15:04:05.000000Z07:00"
	fileMode    = 0o640
)

// Logger writes Exim-format log lines. The zero value and a nil *Logger log
// nothing, so a component that was given no logger needs no checks.
type Logger struct {
	dir  string
	json bool
	now  func() time.Time

	// mu is held for reading while writing a line and for writing while
	// Reopen or Close swaps the files: lines themselves need no mutual
	// exclusion because each is a single write(2) on an O_APPEND file.
	mu     sync.RWMutex
	main   *os.File
	reject *os.File
	panic  *os.File
	jsonf  *os.File
}

// Open opens (creating when needed) dir/mainlog, dir/rejectlog and
// dir/paniclog, and dir/main.json when json is true.
func Open(dir string, json bool) (*Logger, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("mainlog: create log directory: %w", err)
	}
	l := &Logger{dir: dir, json: json, now: time.Now}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Discard returns a Logger that logs nothing.
func Discard() *Logger { return &Logger{} }

// Main writes one line to the mainlog: "2006-01-02 15:04:05 ID text", or
// without "ID " when id is empty.
func (l *Logger) Main(id, text string) {
	if l == nil {
		return
	}
	now := l.clock()
	line := formatLine(now, id, text)
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.write(l.main, MainFile, line)
	l.writeJSON(now, id, "main", text, nil)
}

// Reject writes text to the mainlog and the rejectlog. The extra lines
// (Exim's "Envelope-from:", "Envelope-to:" and header lines) go only to the
// rejectlog, each escaped onto one physical line without a timestamp, and
// the whole record is one write so concurrent rejections never interleave.
func (l *Logger) Reject(id, text string, extra ...string) {
	if l == nil {
		return
	}
	now := l.clock()
	line := formatLine(now, id, text)
	record := line
	if len(extra) > 0 {
		b := append([]byte(nil), line...)
		for _, e := range extra {
			b = AppendEscaped(b, e)
			b = append(b, '\n')
		}
		record = b
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.write(l.main, MainFile, line)
	l.write(l.reject, RejectFile, record)
	l.writeJSON(now, id, "reject", text, extra)
}

// Panic writes text to the paniclog and the mainlog.
func (l *Logger) Panic(text string) {
	if l == nil {
		return
	}
	now := l.clock()
	line := formatLine(now, "", text)
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.write(l.panic, PanicFile, line)
	l.write(l.main, MainFile, line)
	l.writeJSON(now, "", "panic", text, nil)
}

// Reopen opens every log file afresh and closes the old descriptors, so
// lines written after it land in new files once logrotate has renamed the
// old ones. When a file cannot be opened the old descriptors stay in use.
func (l *Logger) Reopen() error {
	if l == nil || l.dir == "" {
		return nil
	}
	names := []string{MainFile, RejectFile, PanicFile}
	if l.json {
		names = append(names, JSONFile)
	}
	files := make([]*os.File, len(names))
	for i, name := range names {
		f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
		if err != nil {
			for _, g := range files[:i] {
				g.Close()
			}
			return fmt.Errorf("mainlog: %w", err)
		}
		files[i] = f
	}
	l.mu.Lock()
	old := []*os.File{l.main, l.reject, l.panic, l.jsonf}
	l.main, l.reject, l.panic = files[0], files[1], files[2]
	if l.json {
		l.jsonf = files[3]
	}
	l.mu.Unlock()
	return closeAll(old)
}

// Close closes the log files; later calls log nothing.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	old := []*os.File{l.main, l.reject, l.panic, l.jsonf}
	l.main, l.reject, l.panic, l.jsonf = nil, nil, nil, nil
	l.mu.Unlock()
	return closeAll(old)
}

func closeAll(files []*os.File) error {
	var errs []error
	for _, f := range files {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("mainlog: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

func (l *Logger) clock() time.Time {
	if l.now == nil {
		return time.Now()
	}
	return l.now()
}

// write puts one record on f. A log line has nowhere else to report its
// own failure, so it goes to stderr, which the service manager keeps.
func (l *Logger) write(f *os.File, name string, b []byte) {
	if f == nil {
		return
	}
	if _, err := f.Write(b); err != nil {
		fmt.Fprintf(os.Stderr, "mxgate: cannot write %s: %v: %s", filepath.Join(l.dir, name), err, b)
	}
}

type jsonRecord struct {
	Time  string   `json:"time"`
	ID    string   `json:"id"`
	Log   string   `json:"log"`
	Text  string   `json:"text"`
	Extra []string `json:"extra,omitempty"`
}

func (l *Logger) writeJSON(now time.Time, id, log, text string, extra []string) {
	if l.jsonf == nil {
		return
	}
	// Marshalling a struct of strings cannot fail.
	b, _ := json.Marshal(jsonRecord{Time: now.Format(jsonLayout), ID: id, Log: log, Text: text, Extra: extra})
	l.write(l.jsonf, JSONFile, append(b, '\n'))
}

func formatLine(now time.Time, id, text string) []byte {
	b := make([]byte, 0, len(stampLayout)+len(id)+len(text)+8)
	b = now.AppendFormat(b, stampLayout)
	b = append(b, ' ')
	if id != "" {
		b = AppendEscaped(b, id)
		b = append(b, ' ')
	}
	b = AppendEscaped(b, text)
	return append(b, '\n')
}

// Escape returns s with newlines, other control characters, invalid UTF-8
// and non-printable runes written as \n, \r, \t or \xNN (one per byte), so
// that s can never break or forge a log line. Printable UTF-8 is kept.
func Escape(s string) string {
	return string(AppendEscaped(nil, s))
}

// AppendEscaped appends Escape(s) to b.
func AppendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b = append(b, c)
			i++
			continue
		}
		switch c {
		case '\n':
			b = append(b, '\\', 'n')
			i++
			continue
		case '\r':
			b = append(b, '\\', 'r')
			i++
			continue
		case '\t':
			b = append(b, '\\', 't')
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !(r == utf8.RuneError && size == 1) && unicode.IsPrint(r) {
			b = append(b, s[i:i+size]...)
			i += size
			continue
		}
		for _, x := range []byte(s[i : i+size]) {
			b = append(b, '\\', 'x', hex[x>>4], hex[x&0xf])
		}
		i += size
	}
	return b
}

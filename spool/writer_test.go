package spool

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
)

// TestWriterOpenBody reads a message back before it is committed, as the
// content scanners do, and checks the commit still stores it whole.
func TestWriterOpenBody(t *testing.T) {
	tests := []struct{ name, body string }{
		{"empty", ""},
		{"lines", testBody},
		{"bigger than the write buffer", strings.Repeat("0123456789abcdef\n", 10000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openSpool(t)
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if _, err := w.Write([]byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			// Scanners read it in parallel.
			var wg sync.WaitGroup
			got := make([]string, 4)
			for i := range got {
				wg.Go(func() {
					rc, err := w.OpenBody()
					if err != nil {
						got[i] = err.Error()
						return
					}
					b, err := io.ReadAll(rc)
					rc.Close()
					if err != nil {
						got[i] = err.Error()
						return
					}
					got[i] = string(b)
				})
			}
			wg.Wait()
			for i, g := range got {
				if g != tt.body {
					t.Fatalf("reader %d: OpenBody = %d bytes %.40q..., want %d bytes", i, len(g), g, len(tt.body))
				}
			}
			if err := w.Commit(context.Background(), testEnvelope()); err != nil {
				t.Fatal(err)
			}
			body, err := s.OpenBody(w.ID())
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, body); got != tt.body {
				t.Errorf("committed body = %d bytes, want %d", len(got), len(tt.body))
			}
			if _, err := w.OpenBody(); err == nil || !strings.Contains(err.Error(), string(w.ID())) {
				t.Errorf("OpenBody after Commit: error = %v, want one naming %s", err, w.ID())
			}
		})
	}
}

// TestWriterReplaceBody: a milter's new body takes the old one's place
// whole, shorter or longer, and the line count follows it.
func TestWriterReplaceBody(t *testing.T) {
	long := strings.Repeat("0123456789abcdef\n", 10000)
	tests := []struct{ name, old, repl string }{
		{"shorter", long, "new\nbody\n"},
		{"longer", "short\n", long},
		{"empty", testBody, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openSpool(t)
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if _, err := w.Write([]byte(tt.old)); err != nil {
				t.Fatal(err)
			}
			n, err := w.ReplaceBody(strings.NewReader(tt.repl))
			if err != nil || n != int64(len(tt.repl)) {
				t.Fatalf("ReplaceBody = %d, %v; want %d, nil", n, err, len(tt.repl))
			}
			env := testEnvelope()
			if err := w.Commit(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if want := strings.Count(tt.repl, "\n"); env.BodyLinecount != want {
				t.Errorf("BodyLinecount = %d, want %d", env.BodyLinecount, want)
			}
			body, err := s.OpenBody(w.ID())
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, body); got != tt.repl {
				t.Errorf("committed body = %d bytes %.40q, want %d bytes", len(got), got, len(tt.repl))
			}
		})
	}
}

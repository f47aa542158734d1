package localsubmit

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRequest feeds the server's parser a client's byte stream: the
// command line, then the message. It must never read more of the
// message than its limit, nor trust a length it was sent.
func FuzzRequest(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/requests/*")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	const limit = 1000
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		args, err := readArgs(br)
		if err != nil {
			return
		}
		total := 0
		for _, a := range args {
			total += len(a)
		}
		if total > maxArgsLen {
			t.Fatalf("args of %d bytes, over %d", total, maxArgsLen)
		}
		body := &bodyReader{r: br, max: limit}
		b, _ := io.ReadAll(body)
		if len(b) > limit {
			t.Fatalf("read %d bytes of message, over the limit %d", len(b), limit)
		}
	})
}

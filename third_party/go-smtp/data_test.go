package smtp

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// refData is the DATA reader's state machine a byte at a time, as it was
// before the mid-line runs were copied at once: what Read must still
// return, byte for byte, with the same error.
func refData(in []byte) ([]byte, error) {
	const (
		beginLine = iota
		dot
		dotCR
		cr
		data
		eof
	)
	var out []byte
	state := beginLine
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch state {
		case beginLine:
			if c == '.' {
				state = dot
				continue
			}
			if c == '\r' {
				state = cr
				break
			}
			state = data
		case dot:
			if c == '\r' {
				state = dotCR
				continue
			}
			state = data
		case dotCR:
			if c == '\n' {
				return out, nil
			}
			i--
			c = '\r'
			state = cr
		case cr:
			if c == '\n' {
				state = beginLine
				break
			}
			if c != '\r' {
				state = data
			}
		case data:
			if c == '\r' {
				state = cr
			}
		}
		out = append(out, c)
	}
	return out, io.ErrUnexpectedEOF
}

func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"a\r\n.\r\n", "..x\r\n.\r\n", "a\rb\nc\r\r\n.\r\n", ".\r.\r\n", "no end", "x\r\n.\rbc\r\n.\r\n",
	} {
		f.Add([]byte(s), uint8(16), uint8(5))
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSize, readSize uint8) {
		want, wantErr := refData(in)
		r := &dataReader{r: bufio.NewReaderSize(bytes.NewReader(in), 16+int(bufSize))}
		var got []byte
		p := make([]byte, 1+int(readSize%64))
		var err error
		for {
			var n int
			n, err = r.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			err = nil
		}
		if !bytes.Equal(got, want) || err != wantErr {
			t.Fatalf("%q: got %q, %v; want %q, %v", in, got, err, want, wantErr)
		}
	})
}

// refLineLimit is lineLimitReader's byte loop, as it was: whether in, read
// in one piece after cur bytes of a line, passes the limit, and the line
// length after it.
func refLineLimit(cur, limit int, in []byte) (int, bool) {
	for _, c := range in {
		if c == '\n' {
			cur = 0
		}
		cur++
		if cur > limit {
			return cur, false
		}
	}
	return cur, true
}

func FuzzLineLimitReader(f *testing.F) {
	f.Add([]byte("ab\ncd\n\nlonger line\n"), uint8(3), uint8(4))
	f.Fuzz(func(t *testing.T, in []byte, limit, chunk uint8) {
		lim := 1 + int(limit%32)
		src := bytes.NewReader(in)
		r := &lineLimitReader{R: src, LineLimit: lim}
		p := make([]byte, 1+int(chunk%16))
		cur, pos := 0, 0
		for {
			_, err := r.Read(p)
			if err == io.EOF {
				return
			}
			// What this Read took from the source, whatever it returned.
			took := in[pos : len(in)-src.Len()]
			pos = len(in) - src.Len()
			wantCur, ok := refLineLimit(cur, lim, took)
			if gotOK := err == nil; gotOK != ok {
				t.Fatalf("%q limit %d: err %v, want ok %v", in, lim, err, ok)
			}
			if !ok {
				return
			}
			if r.curLineLength != wantCur {
				t.Fatalf("%q limit %d: line length %d, want %d", in, lim, r.curLineLength, wantCur)
			}
			cur = wantCur
		}
	})
}

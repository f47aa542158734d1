// Package header reads a message's header block into the spool's form:
// the one reader behind the SMTP session's DATA (gateway) and local
// submission (submit). Lines arrive with LF line endings; each field,
// folded continuation lines included, becomes one spool.Header typed by
// its name.
package header

import (
	"bufio"
	"errors"
	"io"
	"strings"

	"mxgate/spool"
)

// ErrTooBig: the header block is larger than the limit Read was given.
var ErrTooBig = errors.New("header block too big")

// LineFunc returns the next line of a message with its LF, or the first
// limit bytes of a longer line. The last line of the input may lack its
// LF. At the end of the message it returns no bytes (nil or io.EOF); a
// final line may come together with io.EOF. The line is the caller's to
// keep: it must not be overwritten by later calls.
type LineFunc func(limit int) ([]byte, error)

// Read reads the header block of at most max bytes. It stops after the
// blank line that ends the block (blank is true; the blank line is not
// counted in max), at the end of the message, or at the first line that
// is not a header field: a field start (RFC 5322 ftext, optional white
// space, ":") or a continuation of the field before it. That line is
// returned as body, the first line of the body: a message without a
// header block is all body. A field cut off by the end of the input gets
// its LF. A block over max bytes is ErrTooBig; any other error of next
// is returned as it is.
//
// A line longer than the rest of the limit is only ever asked for in
// part, and that part already makes the block too big, so a cut line is
// never mistaken for two.
func Read(next LineFunc, max int) (headers []spool.Header, body []byte, blank bool, err error) {
	var cur []byte // the field being read, continuation lines included
	total := 0
	flush := func() {
		if cur == nil {
			return
		}
		if cur[len(cur)-1] != '\n' {
			cur = append(cur, '\n')
		}
		h := spool.Header{Text: string(cur)}
		h.Type = spool.HeaderType(h.Name())
		headers = append(headers, h)
		cur = nil
	}
	for {
		line, err := next(max - total + 1)
		if total += len(line); total > max {
			return nil, nil, false, ErrTooBig
		}
		if err != nil && err != io.EOF {
			return nil, nil, false, err
		}
		switch {
		case len(line) == 0:
			flush()
			return headers, nil, false, nil
		case line[0] == '\n':
			flush()
			return headers, nil, true, nil
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil {
				return headers, line, false, nil
			}
			cur = append(cur, line...)
		case IsFieldStart(line):
			flush()
			cur = line
		default:
			flush()
			return headers, line, false, nil
		}
		if err == io.EOF {
			flush()
			return headers, nil, false, nil
		}
	}
}

// ReadFrom is Read with lines from br (ReadLine).
func ReadFrom(br *bufio.Reader, max int) (headers []spool.Header, body []byte, blank bool, err error) {
	return Read(func(limit int) ([]byte, error) { return ReadLine(br, limit) }, max)
}

// ReadLine returns the next line of br with its LF (without one at the end
// of input, where the error is io.EOF), or the first limit bytes of a
// longer line (at least what br buffers); a LineFunc for Read. The line is
// a new slice.
func ReadLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if err != bufio.ErrBufferFull || len(line) >= limit {
			if err == bufio.ErrBufferFull {
				err = nil
			}
			return line, err
		}
	}
}

// IsFieldStart reports whether line starts a header field: RFC 5322 ftext
// (printable ASCII but ":"), optional white space (obsolete syntax still
// seen), then ":".
func IsFieldStart(line []byte) bool {
	i := 0
	for i < len(line) && line[i] >= 33 && line[i] <= 126 && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}

// MessageID is the first Message-ID field's value (the header of type 'I')
// as the mainlog's id= wants it: unfolded, trimmed, without the angle
// brackets; "" when there is none.
func MessageID(headers []spool.Header) string {
	for _, h := range headers {
		if h.Type != 'I' {
			continue
		}
		v := h.UnfoldedValue()
		return strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
	}
	return ""
}

// Subject is the message's first Subject field, unfolded; "" without one.
func Subject(headers []spool.Header) string {
	for _, h := range headers {
		if h.Type != '*' && strings.EqualFold(h.Name(), "Subject") {
			return h.UnfoldedValue()
		}
	}
	return ""
}

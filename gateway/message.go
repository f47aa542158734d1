package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mxgate/spool"
)

// maxHeaderBlock bounds the header block, the only part of a message held
// in memory: headers go to the -H file, which is read whole.
const maxHeaderBlock = 1 << 20

var (
	errHeaderTooBig  = errors.New("header block larger than 1 MiB")
	errMessageTooBig = errors.New("message larger than the size limit")
)

// lineEnds turns the message as go-smtp yields it (dot-unstuffed, CRLF
// line ends) into the spool's form (LF line ends) and notes any bare CR or
// bare LF. The output never holds a CR, whatever the input: CRLF becomes
// LF, a bare LF stays a line end and a bare CR is dropped. That is the
// normalisation of bare_newline = "normalize"; with "reject" the caller
// refuses the message when Bare is set. Dropping a bare CR rather than
// keeping it means no downstream that takes CR for a line end (the SMTP
// smuggling of "\r.\r\n") ever sees one from us, and a line holding only
// "." is then ordinary content that delivery dot-stuffs.
type lineEnds struct {
	r    io.Reader
	buf  []byte
	cr   bool // the last byte read was a CR whose line end is not known yet
	Bare bool // a bare CR or bare LF was seen
}

func (d *lineEnds) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(d.buf) < len(p) {
		d.buf = make([]byte, len(p))
	}
	for {
		m, err := d.r.Read(d.buf[:len(p)])
		// Every input byte yields at most one output byte, so p has room.
		n := 0
		for _, c := range d.buf[:m] {
			if d.cr {
				d.cr = false
				if c == '\n' {
					p[n] = '\n'
					n++
					continue
				}
				d.Bare = true
			}
			switch c {
			case '\r':
				d.cr = true
			case '\n':
				d.Bare = true
				p[n] = '\n'
				n++
			default:
				p[n] = c
				n++
			}
		}
		if err != nil && d.cr {
			d.cr = false
			d.Bare = true
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// readHeader reads the header block (LF line ends) from br. It stops at the
// blank line that ends the block, which it consumes (blank = true), or at
// the first line that is not a header field, which it returns in body as
// the start of the body. A header cut off by the end of the message gets
// its final LF. The block, blank line included, is at most max bytes.
func readHeader(br *bufio.Reader, max int) (headers []spool.Header, body []byte, blank bool, err error) {
	var cur []byte // the header being read, continuation lines included
	total := 0
	flush := func() {
		if cur != nil {
			name, _, _ := bytes.Cut(cur, []byte(":"))
			headers = append(headers, spool.Header{
				Type: spool.HeaderType(string(bytes.TrimRight(name, " \t"))),
				Text: string(cur),
			})
			cur = nil
		}
	}
	for {
		line, err := readLine(br, max-total+1)
		total += len(line)
		if total > max {
			return nil, nil, false, errHeaderTooBig
		}
		if err != nil && err != io.EOF {
			return nil, nil, false, err
		}
		switch {
		case len(line) == 0:
			// End of message.
		case line[0] == '\n':
			flush()
			return headers, nil, true, nil
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil {
				flush()
				return headers, line, false, nil
			}
			cur = append(cur, line...)
		case isFieldStart(line):
			flush()
			cur = line
		default:
			flush()
			return headers, line, false, nil
		}
		if err == io.EOF {
			if cur != nil && cur[len(cur)-1] != '\n' {
				cur = append(cur, '\n')
			}
			flush()
			return headers, nil, false, nil
		}
	}
}

// readLine returns the next line with its LF (without one at the end of
// input), or the first limit bytes of a longer line: that is enough for
// the caller to see the header block is too big.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
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

// isFieldStart reports whether line starts a header field: RFC 5322
// ftext (printable ASCII but ":"), optional white space (obsolete syntax
// still seen), then ":".
func isFieldStart(line []byte) bool {
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

// messageID returns the Message-ID as mainlog's id= wants it: the value
// unfolded, trimmed and without angle brackets; "" when there is none.
func messageID(headers []spool.Header) string {
	for _, h := range headers {
		if h.Type != 'I' {
			continue
		}
		_, v, _ := strings.Cut(h.Text, ":")
		v = strings.TrimSpace(strings.ReplaceAll(v, "\n", ""))
		v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
		return v
	}
	return ""
}

// receivedInfo is what the Received: header records about one arrival.
type receivedInfo struct {
	Helo, IP, Hostname, With string
	ID                       spool.ID
	Sender                   string   // "" = null sender
	Recipients               []string // "for" only when there is exactly one
	Time                     time.Time
}

// received builds our Received: header (RFC 5321 §4.4) in the spool's
// form (LF, folded with a tab), e.g.
//
//	Received: from client.example ([192.0.2.1])
//		by mx.example.test with ESMTPS id 1tXyZa-000AbC-Qr
//		(envelope-from <a@client.example>)
//		for <b@example.test>; Mon, 02 Jan 2006 15:04:05 +0000
func received(ri receivedInfo) spool.Header {
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\n\tby %s with %s id %s\n\t(envelope-from <%s>)",
		ri.Helo, ri.IP, ri.Hostname, ri.With, ri.ID, commentEscape(ri.Sender))
	if len(ri.Recipients) == 1 {
		fmt.Fprintf(&b, "\n\tfor <%s>", ri.Recipients[0])
	}
	fmt.Fprintf(&b, "; %s\n", ri.Time.Format(time.RFC1123Z))
	return spool.Header{Type: 'P', Text: b.String()}
}

// commentEscape quotes what would end or nest an RFC 5322 comment: a
// quoted local part may hold "(", ")" or "\".
func commentEscape(s string) string {
	if !strings.ContainsAny(s, `()\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '(' || c == ')' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// safeHelo makes the HELO argument fit the Received: header, the -H file
// and the logs: go-smtp takes any bytes up to the first space, so anything
// but the characters of domains and address literals becomes "?", and the
// length is capped at a domain name's 255.
func safeHelo(h string) string {
	if len(h) > 255 {
		h = h[:255]
	}
	b := []byte(h)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			b[i] = '?'
		}
	}
	return string(b)
}

package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"mxgate/spool"
)

// maxHeaderBlock bounds the header block, the only part of a message held
// in memory: headers go to the -H file, which is read whole.
const maxHeaderBlock = 1 << 20

var errMessageTooBig = errors.New("message larger than the size limit")

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
	cr   bool // the last byte read was a CR whose line end is not known yet
	Bare bool // a bare CR or bare LF was seen
}

// Read reads into p and converts there: every input byte yields at most
// one output byte, left to right, so the output never overtakes the input
// still to convert and no second buffer is needed.
func (d *lineEnds) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		m, err := d.r.Read(p)
		n := d.convert(p, p[:m])
		if err != nil && d.cr {
			d.cr = false
			d.Bare = true
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// convert writes in to p in the spool's form and returns the bytes
// written; in may be p itself. It goes a line at a time with bytes.IndexByte rather than a
// byte at a time: under load the byte loop was a fifth of the daemon's
// CPU for 100 KiB messages.
func (d *lineEnds) convert(p, in []byte) int {
	n := 0
	for len(in) > 0 {
		if d.cr {
			d.cr = false
			if in[0] == '\n' {
				p[n] = '\n'
				n++
				in = in[1:]
				continue
			}
			d.Bare = true // that CR was bare: dropped
		}
		j := bytes.IndexByte(in, '\n')
		if j < 0 {
			// No line end here: a CR at the end may start one.
			if in[len(in)-1] == '\r' {
				d.cr = true
				in = in[:len(in)-1]
			}
			return n + d.copyNoCR(p[n:], in)
		}
		line := in[:j]
		if j > 0 && line[j-1] == '\r' {
			line = line[:j-1]
		} else {
			d.Bare = true // an LF without its CR
		}
		n += d.copyNoCR(p[n:], line)
		p[n] = '\n'
		n++
		in = in[j+1:]
	}
	return n
}

// copyNoCR copies src to dst without its CRs, each of them bare.
func (d *lineEnds) copyNoCR(dst, src []byte) int {
	n := 0
	for {
		i := bytes.IndexByte(src, '\r')
		if i < 0 {
			return n + copy(dst[n:], src)
		}
		d.Bare = true
		n += copy(dst[n:], src[:i])
		src = src[i+1:]
	}
}

// ReceivedInfo is what the Received: header records about one arrival
// (miltersrv fills it from the MTA's macros for its stand-in of the
// MTA's own Received line).
type ReceivedInfo struct {
	Helo, IP, Hostname, With string
	Name                     string // the client's host name; "" none
	ID                       spool.ID
	Sender                   string   // "" = null sender
	Recipients               []string // "for" only when there is exactly one
	Time                     time.Time
}

// Received builds our Received: header (RFC 5321 §4.4) in the spool's
// form (LF, folded with a tab), e.g.
//
//	Received: from client.example (mail.client.example [192.0.2.1])
//		by mx.example.test with ESMTPS id 1tXyZa-000AbC-Qr
//		(envelope-from <a@client.example>)
//		for <b@example.test>; Mon, 02 Jan 2006 15:04:05 +0000
//
// with "([192.0.2.1])" for a client without a host name.
func Received(ri ReceivedInfo) spool.Header {
	var b strings.Builder
	name := ri.Name
	if name != "" {
		name += " "
	}
	fmt.Fprintf(&b, "Received: from %s (%s[%s])\n\tby %s with %s id %s\n\t(envelope-from <%s>)",
		ri.Helo, name, ri.IP, ri.Hostname, ri.With, ri.ID, commentEscape(ri.Sender))
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

// SafeHelo makes the HELO argument fit the Received: header, the -H file
// and the logs: go-smtp takes any bytes up to the first space, so anything
// but the characters of domains and address literals becomes "?", and the
// length is capped at a domain name's 255.
func SafeHelo(h string) string {
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

// The DATA path's 64 KiB reader, kept between messages: allocating its
// buffer (and lineEnds' own, before it converted in place) for each
// message was half the daemon's allocations under load (go tool pprof of
// scripts/load.sh's PPROF=1 round).
var dataReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

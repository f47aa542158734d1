package submit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"mxgate/header"
	"mxgate/spool"
)

// maxHeaderBlock bounds the header block, held in memory and written
// whole into the -H file; the gateway allows the same.
const maxHeaderBlock = 1 << 20

// input reads a submitted message: lines ending in LF or CRLF (or more
// CRs), stored with LF; with dotEnds a line holding only "." ends it (sendmail without -i).
type input struct {
	br      *bufio.Reader
	dotEnds bool
	ended   bool // the message has ended: a "." line or the end of input
	midLine bool // the last line returned was cut short
}

// line returns the next line with a LF ending, or the first max bytes
// of a longer one (the rest comes with the next call, and is no "." line);
// nil at the end of the message.
func (in *input) line(max int) ([]byte, error) {
	if in.ended {
		return nil, nil
	}
	atStart := !in.midLine
	in.midLine = false
	var line []byte
	for {
		frag, err := in.br.ReadSlice('\n')
		line = append(line, frag...)
		if err == bufio.ErrBufferFull {
			if len(line) < max {
				continue
			}
			// A CR cut from its LF goes with the LF.
			if next, _ := in.br.Peek(1); line[len(line)-1] != '\r' || len(next) != 1 || next[0] != '\n' {
				in.midLine = true
				return line, nil
			}
			in.br.Discard(1)
			line, err = append(line, '\n'), nil
		}
		switch {
		case err == io.EOF:
			in.ended = true
			if len(line) == 0 || atStart && in.dotEnds && string(line) == "." {
				return nil, nil
			}
			return append(bytes.TrimRight(line, "\r"), '\n'), nil
		case err != nil:
			return nil, fmt.Errorf("reading the message: %w", err)
		}
		// CRLF, or LF, ends the line; CRs before it are the line end too.
		line = append(bytes.TrimRight(line[:len(line)-1], "\r"), '\n')
		if atStart && in.dotEnds && string(line) == ".\n" {
			in.ended = true
			return nil, nil
		}
		return line, nil
	}
}

var errHeaderTooBig = errors.New("header block larger than 1 MiB")

// readHeader reads the header block (header.Read). It stops after the
// blank line that ends it, or at the first line that is not a header
// field, which it returns as the start of the body: a message piped in
// without any header ("echo hi | sendmail root") is all body. A leading
// mbox "From " line is dropped, as sendmail does.
func (in *input) readHeader() (headers []spool.Header, body []byte, err error) {
	first := true
	next := func(limit int) ([]byte, error) {
		line, err := in.line(limit)
		if first && err == nil && bytes.HasPrefix(line, []byte("From ")) {
			line, err = in.line(limit)
		}
		first = false
		return line, err
	}
	headers, body, _, err = header.Read(next, maxHeaderBlock)
	if errors.Is(err, header.ErrTooBig) {
		err = errHeaderTooBig
	}
	return headers, body, err
}

package localsubmit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The protocol is frames, each a type byte, a 4-byte big-endian length
// and that many bytes. The client sends one frameArgs, then the message
// as frameData frames and one frameEnd; the server answers with frameLine
// frames (lines for the client's stderr) and one frameStatus (the exit
// status, 4 bytes), then closes. The server may answer before it has read
// the whole message (a bad command line): the client stops sending.
const (
	frameArgs   = 'A' // the command line after the program name, NUL-separated
	frameData   = 'D' // a piece of the message
	frameEnd    = 'E' // end of the message; empty
	frameLine   = 'L' // a line for stderr, without its newline
	frameStatus = 'X' // the exit status, uint32
)

// Bounds of what a server reads before it has a message.
const (
	maxArgsLen = 64 << 10 // a command line
	maxFrame   = 64 << 10 // one data frame, and one line
)

// ErrTooBig ends a message longer than the server's limit.
var ErrTooBig = errors.New("message too big for local submission")

var errProtocol = errors.New("local submission protocol error")

// writeFrame sends one frame.
func writeFrame(w io.Writer, typ byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readHeader reads a frame's type and length, refusing a length over max.
func readHeader(r io.Reader, max int) (typ byte, n int, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > uint32(max) {
		return 0, 0, fmt.Errorf("%w: frame %q of %d bytes (at most %d)", errProtocol, hdr[0], size, max)
	}
	return hdr[0], int(size), nil
}

// readArgs reads the request's first frame: the command line.
func readArgs(r io.Reader) ([]string, error) {
	typ, n, err := readHeader(r, maxArgsLen)
	if err != nil {
		return nil, err
	}
	if typ != frameArgs {
		return nil, fmt.Errorf("%w: frame %q where the command line belongs", errProtocol, typ)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// encodeArgs is the payload of frameArgs. An argument holding a NUL
// cannot come from a command line.
func encodeArgs(args []string) ([]byte, error) {
	for _, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("argument %q holds a NUL byte", a)
		}
	}
	b := []byte(strings.Join(args, "\x00"))
	if len(b) > maxArgsLen {
		return nil, fmt.Errorf("command line of %d bytes is too long for local submission (at most %d)", len(b), maxArgsLen)
	}
	return b, nil
}

// bodyReader is the message of a request: the payloads of frameData up
// to frameEnd, at most max bytes in all.
type bodyReader struct {
	r      *bufio.Reader
	max    int64
	read   int64
	left   int // of the current frame
	err    error
	before func() // before each frame header: the idle deadline
}

func (b *bodyReader) Read(p []byte) (int, error) {
	for b.left == 0 && b.err == nil {
		if b.before != nil {
			b.before()
		}
		typ, n, err := readHeader(b.r, maxFrame)
		switch {
		case err != nil:
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
		case typ == frameEnd && n == 0:
			b.err = io.EOF
		case typ != frameData:
			b.err = fmt.Errorf("%w: frame %q in the message", errProtocol, typ)
		case b.read+int64(n) > b.max:
			b.err = ErrTooBig
		default:
			b.left = n
		}
	}
	if b.left == 0 {
		return 0, b.err
	}
	p = p[:min(len(p), b.left)]
	n, err := b.r.Read(p)
	b.left -= n
	b.read += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
		if n == 0 {
			return 0, err
		}
	}
	return n, nil
}

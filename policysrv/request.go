package policysrv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Request is one policy request: its attributes by name
// ("protocol_state", "client_address", "sender", ...).
type Request map[string]string

// Bounds of a request: Postfix sends some thirty attributes, each well
// under a kilobyte; more is a client that is not Postfix.
const (
	maxLine  = 8192
	maxAttrs = 256
)

// ErrMalformed is a request that does not follow the protocol: a line
// without "=", an empty name, a line or request over the bounds. The
// connection cannot be trusted to be in step after it.
var ErrMalformed = errors.New("malformed policy request")

// ReadRequest reads one request: name=value lines up to an empty line.
// It returns io.EOF when the client closed the connection between
// requests, io.ErrUnexpectedEOF in the middle of one, and an error
// wrapping ErrMalformed naming the line of a request that breaks the
// protocol. r must have a buffer of at least maxLine bytes (NewReader).
func ReadRequest(r *bufio.Reader) (Request, error) {
	req := Request{}
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("%w: line %d longer than %d bytes", ErrMalformed, n, maxLine)
		case err == io.EOF && len(line) == 0 && n == 1:
			return nil, io.EOF
		case err == io.EOF:
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			if n == 1 {
				return nil, fmt.Errorf("%w: empty request", ErrMalformed)
			}
			return req, nil
		}
		name, value, ok := bytes.Cut(line, []byte("="))
		if !ok || len(name) == 0 {
			return nil, fmt.Errorf("%w: line %d is not name=value: %.60q", ErrMalformed, n, line)
		}
		if len(req) >= maxAttrs {
			return nil, fmt.Errorf("%w: more than %d attributes", ErrMalformed, maxAttrs)
		}
		req[string(name)] = string(value)
	}
}

// NewReader is a reader of requests from r.
func NewReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, maxLine) }

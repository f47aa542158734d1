package localsubmit

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// ErrNoDaemon: no daemon answers on the socket (it does not exist, or
// its daemon is gone).
var ErrNoDaemon = errors.New("no mxgate daemon answers")

// Submit hands args (the command and sendmail's options and recipients)
// and the message on stdin to the daemon at the socket path, writes the
// lines it answers to stderr and returns its exit status. An error
// wrapping ErrNoDaemon means nothing was sent.
func Submit(ctx context.Context, path string, args []string, stdin io.Reader, stderr io.Writer) (int, error) {
	payload, err := encodeArgs(args)
	if err != nil {
		return 0, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return 0, fmt.Errorf("%w on %s", ErrNoDaemon, path)
		}
		return 0, fmt.Errorf("local submission socket %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	// The message goes out while the answer is awaited: the daemon may
	// answer early (a bad command line) and stop reading.
	sent := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(c, maxFrame+5)
		err := writeFrame(bw, frameArgs, payload)
		buf := make([]byte, maxFrame)
		for err == nil {
			n, rerr := stdin.Read(buf)
			if n > 0 {
				err = writeFrame(bw, frameData, buf[:n])
			}
			if rerr == io.EOF {
				if err == nil {
					err = writeFrame(bw, frameEnd, nil)
				}
				break
			}
			if rerr != nil && err == nil {
				err = fmt.Errorf("reading the message: %w", rerr)
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		sent <- err
	}()

	status, err := readReply(bufio.NewReader(c), stderr)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		// A failure to send says more than the closed connection it
		// left behind.
		select {
		case serr := <-sent:
			if serr != nil {
				err = serr
			}
		default:
		}
		return 0, fmt.Errorf("local submission through %s: %w", path, err)
	}
	return status, nil
}

// readReply copies the daemon's lines to stderr and returns its status.
func readReply(r io.Reader, stderr io.Writer) (int, error) {
	for {
		typ, n, err := readHeader(r, maxFrame)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("the daemon closed the connection without an exit status")
			}
			return 0, err
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return 0, err
		}
		switch {
		case typ == frameLine:
			fmt.Fprintf(stderr, "%s\n", b)
		case typ == frameStatus && n == 4:
			return int(binary.BigEndian.Uint32(b)), nil
		default:
			return 0, fmt.Errorf("%w: frame %q of %d bytes in the answer", errProtocol, typ, n)
		}
	}
}

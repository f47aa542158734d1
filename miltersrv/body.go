package miltersrv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
)

// bodyFile is the message body as the MTA streams it, kept in a
// temporary file under data_dir with LF line ends (the form the checks
// read); it is removed when the transaction ends, whichever way.
type bodyFile struct {
	f        *os.File
	w        *bufio.Writer
	n        int64 // LF form
	cr       bool  // the last chunk ended in a CR
	replaced bool  // a check replaced the body
}

func newBodyFile(dir string) (*bodyFile, error) {
	f, err := os.CreateTemp(dir, "milter-*.body")
	if err != nil {
		return nil, fmt.Errorf("temporary file for the message body: %w", err)
	}
	return &bodyFile{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// Write takes a chunk with CRLF line ends and keeps it with LF ones.
func (b *bodyFile) Write(p []byte) (int, error) {
	in := len(p)
	if b.cr {
		b.cr = false
		if len(p) > 0 && p[0] == '\n' {
			if err := b.put([]byte{'\n'}); err != nil {
				return 0, err
			}
			p = p[1:]
		} else if err := b.put([]byte{'\r'}); err != nil {
			return 0, err
		}
	}
	if len(p) > 0 && p[len(p)-1] == '\r' {
		b.cr, p = true, p[:len(p)-1]
	}
	if err := b.put(bytes.ReplaceAll(p, []byte("\r\n"), []byte("\n"))); err != nil {
		return 0, err
	}
	return in, nil
}

func (b *bodyFile) put(p []byte) error {
	n, err := b.w.Write(p)
	b.n += int64(n)
	if err != nil {
		return fmt.Errorf("writing %s: %w", b.f.Name(), err)
	}
	return nil
}

// flush ends the body: a CR left at its very end is kept.
func (b *bodyFile) flush() error {
	if b.cr {
		b.cr = false
		if err := b.put([]byte{'\r'}); err != nil {
			return err
		}
	}
	if err := b.w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", b.f.Name(), err)
	}
	return nil
}

func (b *bodyFile) open() (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(b.f, 0, b.n)), nil
}

// replace is filters.Message.ReplaceBody: the new body (LF or CRLF line
// ends) takes the old one's place in the file.
func (b *bodyFile) replace(r io.Reader) (int64, error) {
	if err := b.f.Truncate(0); err != nil {
		return 0, fmt.Errorf("replacing the body in %s: %w", b.f.Name(), err)
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("replacing the body in %s: %w", b.f.Name(), err)
	}
	b.w.Reset(b.f)
	b.n, b.cr, b.replaced = 0, false, true
	if _, err := io.Copy(b, r); err != nil {
		return 0, err
	}
	if err := b.flush(); err != nil {
		return 0, err
	}
	return b.n, nil
}

// send gives the MTA the replaced body in chunks of a milter packet's
// size (SMFIR_REPLBODY may come many times; they are joined).
func (b *bodyFile) send(replaceBody func([]byte) error) error {
	r := io.NewSectionReader(b.f, 0, b.n)
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if err := replaceBody(buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", b.f.Name(), err)
		}
	}
}

// Close removes the file.
func (b *bodyFile) Close() error {
	b.f.Close()
	return os.Remove(b.f.Name())
}

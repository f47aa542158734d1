package miltersrv

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestConnWriteDeadline: a reply to an MTA that stops reading fails
// after the server's timeout instead of holding the session.
func TestConnWriteDeadline(t *testing.T) {
	mta, ours := net.Pipe() // a write blocks until the other end reads
	defer mta.Close()
	c := &conn{Conn: ours, timeout: 100 * time.Millisecond}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("reply"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Write to an MTA not reading: %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked 5s after a 100ms timeout")
	}
}

// Package localsubmit is the daemon's local submission socket: sendmail
// run by a user who may not write the spool (PHP's mail() as a web
// account) hands its command line and message to the daemon, which
// submits it as that user, identified by the kernel (SO_PEERCRED), never
// by what the client says, and sends back the lines sendmail prints and
// its exit status, which the client reproduces. The spool stays the
// daemon's user's alone.
package localsubmit

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Caller is the user at the other end of the socket.
type Caller struct {
	UID   int
	Login string // login name: U= in the mainlog, the default sender
	Name  string // full name: the GECOS field up to its first comma; "" when none or the login
}

// Request is one submission.
type Request struct {
	Caller Caller
	// Args is the command line after the program name: the command
	// (-bm, -t) and sendmail's options and recipients.
	Args []string
	// Message is the message; reading it past Options.MaxMessage fails
	// with ErrTooBig.
	Message io.Reader
}

// Handler submits req and returns the lines for the caller's stderr and
// its exit status.
type Handler func(ctx context.Context, req *Request) (lines []string, status int)

// Options configure a Server; every field is required.
type Options struct {
	Path    string // the socket, created mode 0666
	Handler Handler
	// MaxMessage bounds the bytes of a message read; past it the
	// message's reader fails (smtp.max_message_size, with room for the
	// handler to see that it is over).
	MaxMessage int64
	// Timeout bounds each wait for the client (smtp.data_timeout), and
	// the wait for a free slot.
	Timeout time.Duration
	// MaxConcurrent is the submissions handled at once; more wait up to
	// Timeout, then get exit status 75 (EX_TEMPFAIL).
	MaxConcurrent int
	// Log reports a client the server gave up on.
	Log func(string)
}

// Server serves the socket.
type Server struct {
	o     Options
	ln    *net.UnixListener
	slots chan struct{}
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc
}

// exTempFail is sendmail's (sysexits.h) exit status for "try again later".
const exTempFail = 75

// Listen creates the socket at o.Path, replacing a stale one (a socket no
// daemon answers on: its daemon crashed), mode 0666: any local user may
// submit. The caller makes sure no other daemon uses the directory (the
// data_dir's lock).
func Listen(o Options) (*Server, error) {
	if err := os.Remove(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("local submission socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: o.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("local submission socket: %w", err)
	}
	// Close removes the socket; so does a crash not, and Listen then
	// replaces it.
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(o.Path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local submission socket: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{o: o, ln: ln, slots: make(chan struct{}, o.MaxConcurrent), ctx: ctx, stop: stop}, nil
}

// Serve accepts submissions until Close; it returns nil after Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("local submission socket: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

// Close removes the socket, stops accepting and waits for the
// submissions in flight, which end within the Timeout of their client.
func (s *Server) Close() error {
	s.stop()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	caller, err := peer(c)
	if err != nil {
		s.o.Log(fmt.Sprintf("local submission refused: %v", err))
		reply(c, []string{"mxgate: " + err.Error()}, 1)
		return
	}
	wait := time.NewTimer(s.o.Timeout)
	select {
	case s.slots <- struct{}{}:
		wait.Stop()
		defer func() { <-s.slots }()
	case <-wait.C:
		reply(c, []string{fmt.Sprintf("mxgate: %d local submissions are in progress: try again later", s.o.MaxConcurrent)}, exTempFail)
		return
	case <-s.ctx.Done():
		wait.Stop()
		reply(c, []string{"mxgate: the daemon is stopping: try again later"}, exTempFail)
		return
	}
	deadline := func() { c.SetReadDeadline(time.Now().Add(s.o.Timeout)) }
	br := bufio.NewReaderSize(c, 64<<10)
	deadline()
	args, err := readArgs(br)
	if err != nil {
		s.o.Log(fmt.Sprintf("local submission from %s: %v", caller.Login, err))
		reply(c, []string{"mxgate: reading the command line: " + err.Error()}, 1)
		return
	}
	body := &bodyReader{r: br, max: s.o.MaxMessage, before: deadline}
	// A submission in flight finishes when the daemon stops: its client
	// bounds it.
	lines, status := s.o.Handler(context.WithoutCancel(s.ctx), &Request{Caller: caller, Args: args, Message: body})
	c.SetWriteDeadline(time.Now().Add(s.o.Timeout))
	if err := reply(c, lines, status); err != nil {
		s.o.Log(fmt.Sprintf("local submission from %s: sending the result: %v", caller.Login, err))
	}
}

// reply sends the lines and the status.
func reply(w io.Writer, lines []string, status int) error {
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		if len(l) > maxFrame {
			l = l[:maxFrame]
		}
		if err := writeFrame(bw, frameLine, []byte(l)); err != nil {
			return err
		}
	}
	if err := writeFrame(bw, frameStatus, binary.BigEndian.AppendUint32(nil, uint32(status))); err != nil {
		return err
	}
	return bw.Flush()
}

// peer is the user the kernel says is at the other end of c.
func peer(c *net.UnixConn) (Caller, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Caller{}, err
	}
	if credErr != nil {
		return Caller{}, fmt.Errorf("who is calling: %w", os.NewSyscallError("getsockopt SO_PEERCRED", credErr))
	}
	u, err := user.LookupId(strconv.Itoa(int(cred.Uid)))
	if err != nil || u.Username == "" {
		return Caller{}, fmt.Errorf("uid %d (pid %d) has no login name: no sender to submit as", cred.Uid, cred.Pid)
	}
	name, _, _ := strings.Cut(u.Name, ",")
	if name == u.Username {
		name = ""
	}
	return Caller{UID: int(cred.Uid), Login: u.Username, Name: name}, nil
}

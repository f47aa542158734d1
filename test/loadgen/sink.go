package main

import (
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// sink is the gateway's downstream during a probe: it takes every message,
// keeps nothing, and reports each recipient with the moment the message's
// final dot arrived, before its 250 goes out.
type sink struct {
	srv     *smtp.Server
	arrived chan arrival
}

type arrival struct {
	rcpt string
	at   time.Time
}

func startSink(addr string) (*sink, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &sink{arrived: make(chan arrival, 1024)}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "sink.load.test"
	s.srv.MaxMessageBytes = 1 << 30
	s.srv.MaxRecipients = 1000
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	go s.srv.Serve(l)
	return s, nil
}

func (s *sink) close() { s.srv.Close() }

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s    *sink
	rcpt []string
}

func (ss *sinkSession) Reset()                               { ss.rcpt = nil }
func (ss *sinkSession) Logout() error                        { return nil }
func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpt = append(ss.rcpt, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	now := time.Now()
	for _, to := range ss.rcpt {
		ss.s.arrived <- arrival{to, now}
	}
	return nil
}

// await waits until rcpt's message arrived and returns when it did;
// arrivals for others (a previous message's late duplicate) are skipped.
func (s *sink) await(rcpt string, timeout time.Duration) (time.Time, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case got := <-s.arrived:
			if got.rcpt == rcpt {
				return got.at, true
			}
		case <-t.C:
			return time.Time{}, false
		}
	}
}
